"""One handle, eight threads: no crash, no lost writes. Every thread writes
records for one patient (and reads as it goes); afterwards every record is
listed exactly once and reads back with what was written."""

from __future__ import annotations

import threading
from typing import Dict, List

import clarity
from conftest import all_items, new_user, profile

THREADS = 8
PER_THREAD = 25


def test_eight_threads_share_one_handle(client: clarity.Clarity) -> None:
    _, doctor = new_user(client, "clinician")
    patient = client.create_patient(doctor, profile())
    written: Dict[str, dict] = {}
    errors: List[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(PER_THREAD):
                data = {"thread": n, "i": i}
                record = client.create_record(doctor, patient["id"], "note", data)
                assert client.get_record(doctor, record["id"])["data"] == data
                with lock:
                    written[record["id"]] = data
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(written) == THREADS * PER_THREAD

    listed = all_items(lambda cur: client.list_records(doctor, patient["id"], 100, cur))
    assert sorted(r["id"] for r in listed) == sorted(written)
    for record in listed:
        assert record["data"] == written[record["id"]]
    _, auditor = new_user(client, "auditor")
    assert client.verify_audit(auditor)["ok"]
