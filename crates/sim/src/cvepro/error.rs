//! The simulator's one error type: scripting mistakes (unknown charger, wrong state) and I/O.

/// Errors of the CVE-Pro simulator and its scripting API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No charger with this index or `chargeBoxId`.
    #[error("unknown charger {0}")]
    UnknownCharger(String),
    /// The charger has no such connector.
    #[error("charger {charger} has no connector {connector}")]
    UnknownConnector {
        /// Charger index.
        charger: usize,
        /// Connector id asked for.
        connector: u32,
    },
    /// No resident holds this tag.
    #[error("unknown tag {0}")]
    UnknownTag(String),
    /// No transaction with this id.
    #[error("unknown transaction {0}")]
    UnknownTransaction(i64),
    /// The operation does not apply to the connector's current state.
    #[error("charger {charger} connector {connector} is {actual}, expected {expected}")]
    InvalidState {
        /// Charger index.
        charger: usize,
        /// Connector id.
        connector: u32,
        /// What the operation needs.
        expected: &'static str,
        /// What the connector is.
        actual: &'static str,
    },
    /// Binding or serving failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl SimError {
    /// HTTP status for the control API.
    pub fn http_status(&self) -> u16 {
        match self {
            SimError::UnknownCharger(_)
            | SimError::UnknownConnector { .. }
            | SimError::UnknownTag(_)
            | SimError::UnknownTransaction(_) => 404,
            SimError::InvalidState { .. } => 409,
            SimError::Io(_) => 500,
        }
    }
}
