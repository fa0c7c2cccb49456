//! The notification rules by name: what each one is called in the database, who reads it, and
//! the reasons a planned message can be called off.
//!
//! The snake_case names are stored (outbox rows, resident opt-outs, site policies): never
//! rename one.

use serde::{Deserialize, Serialize};

/// One kind of message vetric sends. See the module docs of [`crate::notify`] for when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    // Residents.
    SessionStarted,
    IdleStarted,
    IdleReminder,
    SessionFinished,
    SessionInterrupted,
    // Managers.
    ChargerFaulted,
    ChargerOffline,
    UnknownTag,
    // Operators.
    VendorDown,
    VendorRecovered,
    VendorShapeChanged,
    ChargersZero,
    GatewayDown,
    BacklogStale,
    /// "Send a test message" from the settings page.
    Test,
    // Statements (issue #8 item 8), announced when a month's statement is issued.
    /// The site's statement to its managers by e-mail (on by default).
    StatementIssuedManager,
    /// Each apartment's own summary to its residents on WhatsApp (opt-in: off by default).
    StatementApartmentSummary,
}

/// Who a rule's messages are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// The resident whose session it is (WhatsApp). Opt-outs and quiet hours apply.
    Resident,
    /// The site's managers. Preferences and quiet hours never delay them.
    Manager,
    /// Whoever runs vetric. Preferences and quiet hours never delay them.
    Operator,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Resident => "resident",
            Self::Manager => "manager",
            Self::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "resident" => Some(Self::Resident),
            "manager" => Some(Self::Manager),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }

    pub fn label_pt_br(self) -> &'static str {
        match self {
            Self::Resident => "Morador",
            Self::Manager => "Síndico/gestor",
            Self::Operator => "Operação",
        }
    }
}

impl Rule {
    pub const ALL: [Rule; 17] = [
        Rule::SessionStarted,
        Rule::IdleStarted,
        Rule::IdleReminder,
        Rule::SessionFinished,
        Rule::SessionInterrupted,
        Rule::ChargerFaulted,
        Rule::ChargerOffline,
        Rule::UnknownTag,
        Rule::VendorDown,
        Rule::VendorRecovered,
        Rule::VendorShapeChanged,
        Rule::ChargersZero,
        Rule::GatewayDown,
        Rule::BacklogStale,
        Rule::Test,
        Rule::StatementIssuedManager,
        Rule::StatementApartmentSummary,
    ];

    /// Stable snake_case name (stored in the database).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionStarted => "session_started",
            Self::IdleStarted => "idle_started",
            Self::IdleReminder => "idle_reminder",
            Self::SessionFinished => "session_finished",
            Self::SessionInterrupted => "session_interrupted",
            Self::ChargerFaulted => "charger_faulted",
            Self::ChargerOffline => "charger_offline",
            Self::UnknownTag => "unknown_tag",
            Self::VendorDown => "vendor_down",
            Self::VendorRecovered => "vendor_recovered",
            Self::VendorShapeChanged => "vendor_shape_changed",
            Self::ChargersZero => "chargers_zero",
            Self::GatewayDown => "gateway_down",
            Self::BacklogStale => "backlog_stale",
            Self::Test => "test",
            Self::StatementIssuedManager => "statement_issued_manager",
            Self::StatementApartmentSummary => "statement_apartment_summary",
        }
    }

    pub fn parse(s: &str) -> Option<Rule> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn audience(self) -> Audience {
        match self {
            Self::SessionStarted
            | Self::IdleStarted
            | Self::IdleReminder
            | Self::SessionFinished
            | Self::SessionInterrupted
            | Self::StatementApartmentSummary => Audience::Resident,
            Self::ChargerFaulted
            | Self::ChargerOffline
            | Self::UnknownTag
            | Self::StatementIssuedManager => Audience::Manager,
            Self::VendorDown
            | Self::VendorRecovered
            | Self::VendorShapeChanged
            | Self::ChargersZero
            | Self::GatewayDown
            | Self::BacklogStale
            | Self::Test => Audience::Operator,
        }
    }

    /// False for alerts that must not travel through the WhatsApp gateway because they are
    /// about the gateway (or a backlog the gateway is the likely cause of): e-mail and webhook
    /// only (issue #5).
    pub fn whatsapp_allowed(self) -> bool {
        !matches!(self, Self::GatewayDown | Self::BacklogStale)
    }

    /// The name managers see on the settings and log pages.
    pub fn label_pt_br(self) -> &'static str {
        match self {
            Self::SessionStarted => "Recarga iniciada",
            Self::IdleStarted => "Veículo parado após a recarga",
            Self::IdleReminder => "Lembrete de veículo parado",
            Self::SessionFinished => "Recarga concluída",
            Self::SessionInterrupted => "Recarga interrompida",
            Self::ChargerFaulted => "Carregador em falha",
            Self::ChargerOffline => "Carregador sem comunicação",
            Self::UnknownTag => "Tag desconhecida usada",
            Self::VendorDown => "Fornecedor fora do ar",
            Self::VendorRecovered => "Fornecedor de volta",
            Self::VendorShapeChanged => "Resposta do fornecedor mudou de formato",
            Self::ChargersZero => "Fornecedor listou zero carregadores",
            Self::GatewayDown => "Gateway do WhatsApp desconectado",
            Self::BacklogStale => "Mensagens atrasadas na fila",
            Self::Test => "Mensagem de teste",
            Self::StatementIssuedManager => "Extrato emitido (e-mail aos gestores)",
            Self::StatementApartmentSummary => "Resumo do extrato do apartamento",
        }
    }

    /// The `{{placeholders}}` a template of this rule may use (`ref` is always available).
    pub fn placeholders(self) -> &'static [&'static str] {
        match self {
            Self::SessionStarted => &[
                "nome",
                "apartamento",
                "carregador",
                "conector",
                "local",
                "inicio",
                "tag",
                "ref",
            ],
            Self::IdleStarted => &[
                "nome",
                "apartamento",
                "carregador",
                "conector",
                "local",
                "inicio",
                "tag",
                "desde",
                "ocioso_min",
                "ref",
            ],
            Self::IdleReminder => &[
                "nome",
                "apartamento",
                "carregador",
                "conector",
                "local",
                "inicio",
                "tag",
                "desde",
                "ocioso_min",
                "lembrete",
                "lembretes_max",
                "ref",
            ],
            Self::SessionFinished => &[
                "nome",
                "apartamento",
                "carregador",
                "conector",
                "local",
                "inicio",
                "fim",
                "duracao",
                "energia_kwh",
                "ocioso_min",
                "custo",
                "custo_energia",
                "taxa_ociosidade",
                "tag",
                "ref",
            ],
            Self::SessionInterrupted => &[
                "nome",
                "apartamento",
                "carregador",
                "conector",
                "local",
                "inicio",
                "fim",
                "duracao",
                "energia_kwh",
                "ocioso_min",
                "motivo",
                "tag",
                "ref",
            ],
            Self::ChargerFaulted => &["local", "carregador", "conector", "erro", "desde", "ref"],
            Self::ChargerOffline => &["local", "carregador", "desde", "ref"],
            Self::UnknownTag => &["local", "tag", "carregador", "conector", "quando", "ref"],
            Self::VendorDown => &["local", "desde", "ciclos", "erro", "ref"],
            Self::VendorRecovered => &["local", "desde", "ciclos", "ref"],
            Self::VendorShapeChanged => &["local", "campo", "quando", "ref"],
            Self::ChargersZero => &["local", "anterior", "quando", "ref"],
            Self::GatewayDown => &["local", "estado", "erro", "desde", "ref"],
            Self::BacklogStale => &["local", "pendentes", "minutos", "ref"],
            Self::Test => &["local", "ref"],
            Self::StatementIssuedManager => &[
                "local", "mes", "versao", "tabela", "sessoes", "kwh", "total", "link", "ref",
            ],
            Self::StatementApartmentSummary => &[
                "nome",
                "apartamento",
                "local",
                "mes",
                "versao",
                "sessoes",
                "kwh",
                "kwh_ponta",
                "kwh_fora_ponta",
                "custo_energia",
                "taxa_ociosidade",
                "total",
                "ref",
            ],
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a planned message is not sent after all (stored as the cancelled row's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The session ended before the message went out.
    SessionOver,
    /// The car started taking energy again: the idle warning no longer applies.
    ChargingResumed,
    /// The charger came back before the offline alert went out.
    ChargerBack,
    /// The resident opted out of this rule.
    OptedOut,
    /// Held by quiet hours for longer than the policy's `max_age_after_quiet_min`.
    TooOldAfterQuietHours,
    /// The site turned the rule off after the message was planned.
    RuleDisabled,
    /// The resident has no phone number to send to.
    NoPhone,
}

impl CancelReason {
    pub const ALL: [CancelReason; 7] = [
        CancelReason::SessionOver,
        CancelReason::ChargingResumed,
        CancelReason::ChargerBack,
        CancelReason::OptedOut,
        CancelReason::TooOldAfterQuietHours,
        CancelReason::RuleDisabled,
        CancelReason::NoPhone,
    ];

    /// Stable snake_case name (stored in the database).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionOver => "session_over",
            Self::ChargingResumed => "charging_resumed",
            Self::ChargerBack => "charger_back",
            Self::OptedOut => "opted_out",
            Self::TooOldAfterQuietHours => "too_old_after_quiet_hours",
            Self::RuleDisabled => "rule_disabled",
            Self::NoPhone => "no_phone",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// What the notification log shows.
    pub fn label_pt_br(self) -> &'static str {
        match self {
            Self::SessionOver => "a recarga já terminou",
            Self::ChargingResumed => "o veículo voltou a carregar",
            Self::ChargerBack => "o carregador voltou a se comunicar",
            Self::OptedOut => "o morador optou por não receber este aviso",
            Self::TooOldAfterQuietHours => "ficou velha demais durante o horário de silêncio",
            Self::RuleDisabled => "o aviso foi desativado no condomínio",
            Self::NoPhone => "o morador não tem telefone cadastrado",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_round_trip() {
        let mut names: Vec<_> = Rule::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL.len());
        for r in Rule::ALL {
            assert_eq!(Rule::parse(r.as_str()), Some(r));
            // serde and as_str agree (policies are stored as JSON keyed by rule).
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
            assert!(r.placeholders().contains(&"ref"));
            assert!(!r.label_pt_br().is_empty());
        }
        assert_eq!(Rule::parse("nope"), None);
        for c in CancelReason::ALL {
            assert_eq!(CancelReason::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::json!(c.as_str())
            );
        }
        for a in [Audience::Resident, Audience::Manager, Audience::Operator] {
            assert_eq!(Audience::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn audiences() {
        assert_eq!(Rule::IdleReminder.audience(), Audience::Resident);
        assert_eq!(Rule::UnknownTag.audience(), Audience::Manager);
        assert_eq!(Rule::ChargersZero.audience(), Audience::Operator);
        assert!(!Rule::GatewayDown.whatsapp_allowed());
        assert!(Rule::VendorDown.whatsapp_allowed());
    }
}
