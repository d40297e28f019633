#!/usr/bin/env python3
"""Validate an NDJSON file of FHIR R4 AuditEvent resources.

Used by the audit tests: every line must parse as an AuditEvent under the
fhir.resources models (an implementation independent of Clarity).
Usage: validate_fhir_auditevents.py FILE.ndjson
"""
import json
import sys

try:
    from fhir.resources.R4B.auditevent import AuditEvent
except ImportError:  # older releases name R4 directly
    from fhir.resources.auditevent import AuditEvent


def validate(resource):
    if hasattr(AuditEvent, "model_validate"):
        return AuditEvent.model_validate(resource)
    return AuditEvent.parse_obj(resource)


def main(path):
    count = 0
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            resource = json.loads(line)
            if resource.get("resourceType") != "AuditEvent":
                sys.exit(f"line {number}: not an AuditEvent")
            try:
                validate(resource)
            except Exception as error:  # report which line, then fail
                sys.exit(f"line {number}: invalid AuditEvent: {error}")
            count += 1
    if count == 0:
        sys.exit("no AuditEvent resources in the file")
    print(f"{count} AuditEvent resources are valid FHIR")


if __name__ == "__main__":
    main(sys.argv[1])
