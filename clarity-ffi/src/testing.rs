//! Test-only exports (feature `testing`): the authorisation matrix
//! specification as JSON, so that the C, Python and Node tests hold their
//! answers to the very spec the Rust and HTTP tests use
//! (`clarity_core::testing::matrix::expected`), never to a copy.

use std::ffi::c_char;

use clarity_core::model::Role;
use clarity_core::testing::matrix::{Operation, Relationship, expected};
use serde_json::json;

use crate::error::clarity_error;
use crate::ffi::Out;
use crate::panic::boundary;
use crate::result::clarity_result;

/// The authorisation matrix specification (S-AC-1) as JSON:
/// `{"roles":[..],"operations":[..],"relationships":[..],"cells":[{"role",
/// "operation","relationship","expected"},..]}`, operations and outcomes
/// named as in `clarity_core::testing::matrix` (`"ReadPatient"`,
/// `"Hidden"`). Only in builds with the `testing` feature; free the string
/// with `clarity_string_free`.
#[unsafe(no_mangle)]
pub extern "C" fn clarity_testing_matrix(
    json_out: *mut *mut c_char,
    err_out: *mut *mut clarity_error,
) -> clarity_result {
    boundary(err_out, || {
        let out = Out::new(json_out, "json_out")?;
        let mut cells = Vec::new();
        for rel in Relationship::ALL {
            for role in Role::ALL {
                for op in Operation::ALL {
                    cells.push(json!({
                        "role": role.as_str(),
                        "operation": format!("{op:?}"),
                        "relationship": format!("{rel:?}"),
                        "expected": format!("{:?}", expected(role, op, rel)),
                    }));
                }
            }
        }
        out.write_json(&json!({
            "roles": Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "operations": Operation::ALL.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>(),
            "relationships": Relationship::ALL.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>(),
            "cells": cells,
        }))
    })
}
