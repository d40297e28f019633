// error: E0624
// S-API-1: the operator's principal comes only with its audit event
// (`Clarity::operator`), never from the unaudited constructor.
fn around(clarity: &clarity_core::Clarity) {
    let _operator = clarity.operator_principal();
}

fn main() {
    let _ = around;
}
