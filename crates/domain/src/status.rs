//! OCPP 1.6 connector status, as the vendor spells it, and what people are shown for it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An OCPP 1.6 `ChargePointStatus`.
///
/// The vendor sends the status as free text. The nine values of OCPP 1.6 are named variants;
/// anything else (the OCPP 1.5 `Occupied`, a firmware's invention) is kept verbatim in
/// [`ConnectorStatus::Other`] so that it is shown and counted rather than silently mapped to
/// something it is not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ConnectorStatus {
    Available,
    Preparing,
    Charging,
    SuspendedEV,
    SuspendedEVSE,
    Finishing,
    Reserved,
    Unavailable,
    Faulted,
    Other(String),
}

impl ConnectorStatus {
    /// Parses the vendor's spelling. Never fails: unknown values become [`Self::Other`].
    pub fn from_vendor(text: &str) -> Self {
        match text {
            "Available" => Self::Available,
            "Preparing" => Self::Preparing,
            "Charging" => Self::Charging,
            "SuspendedEV" => Self::SuspendedEV,
            "SuspendedEVSE" => Self::SuspendedEVSE,
            "Finishing" => Self::Finishing,
            "Reserved" => Self::Reserved,
            "Unavailable" => Self::Unavailable,
            "Faulted" => Self::Faulted,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The status as the vendor spells it (the public `status` field of the API and CLI).
    pub fn as_vendor_str(&self) -> &str {
        match self {
            Self::Available => "Available",
            Self::Preparing => "Preparing",
            Self::Charging => "Charging",
            Self::SuspendedEV => "SuspendedEV",
            Self::SuspendedEVSE => "SuspendedEVSE",
            Self::Finishing => "Finishing",
            Self::Reserved => "Reserved",
            Self::Unavailable => "Unavailable",
            Self::Faulted => "Faulted",
            Self::Other(s) => s,
        }
    }

    /// The pt-BR label residents and managers read (DESIGN.md status table).
    pub fn label_pt_br(&self) -> &'static str {
        match self {
            Self::Available => "Disponível",
            Self::Preparing => "Aguardando",
            Self::Charging => "Carregando",
            Self::SuspendedEV => "Ocioso",
            Self::SuspendedEVSE => "Pausado pela estação",
            Self::Finishing => "Finalizando",
            Self::Reserved => "Reservado",
            Self::Unavailable => "Indisponível",
            Self::Faulted => "Com falha",
            Self::Other(_) => "Desconhecido",
        }
    }

    /// True when a car is plugged in and a session may be running.
    pub fn is_occupied(&self) -> bool {
        matches!(
            self,
            Self::Preparing
                | Self::Charging
                | Self::SuspendedEV
                | Self::SuspendedEVSE
                | Self::Finishing
        )
    }
}

impl From<String> for ConnectorStatus {
    fn from(s: String) -> Self {
        Self::from_vendor(&s)
    }
}

impl From<ConnectorStatus> for String {
    fn from(s: ConnectorStatus) -> Self {
        s.as_vendor_str().to_owned()
    }
}

impl fmt::Display for ConnectorStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_vendor_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_spelling_round_trips_including_unknown_values() {
        for s in [
            "Available",
            "Preparing",
            "Charging",
            "SuspendedEV",
            "SuspendedEVSE",
            "Finishing",
            "Reserved",
            "Unavailable",
            "Faulted",
            "Occupied",
        ] {
            assert_eq!(ConnectorStatus::from_vendor(s).as_vendor_str(), s);
        }
        assert_eq!(
            ConnectorStatus::from_vendor("Occupied").label_pt_br(),
            "Desconhecido"
        );
        assert_eq!(ConnectorStatus::SuspendedEV.label_pt_br(), "Ocioso");
    }
}
