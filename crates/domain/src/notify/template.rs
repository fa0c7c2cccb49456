//! Message templates: pt-BR text with `{{placeholders}}`, editable per site and rule.
//!
//! Syntax: `{{name}}` (spaces inside the braces are allowed: `{{ nome }}`). Everything else is
//! literal, including single braces and a `}}` with no opening pair, so WhatsApp markup
//! (`*negrito*`, `_itálico_`) and emoji pass through untouched. A `{{` that is never closed is
//! an error rather than literal text, because it is almost always a typo that would otherwise
//! reach a resident as `{{nome`.

use super::rule::Rule;
use std::collections::BTreeMap;

/// Why a template cannot be used. Messages are pt-BR: the settings page shows them at the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("o modelo está vazio; escreva o texto da mensagem ou restaure o padrão")]
    Empty,
    #[error("variável desconhecida {{{{{name}}}}}; use uma destas: {allowed}")]
    UnknownPlaceholder { name: String, allowed: String },
    #[error(
        "chaves abertas sem fechar na posição {position}: escreva {{{{variavel}}}} com as duas chaves de fechamento"
    )]
    Unclosed { position: usize },
    #[error("o modelo é longo demais ({len} caracteres; o máximo é {max})")]
    TooLong { len: usize, max: usize },
}

/// Longest template accepted (WhatsApp allows far more, but a notice that long is a mistake).
pub const MAX_TEMPLATE_CHARS: usize = 2000;

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn parse(template: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = template;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            pieces.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(TemplateError::Unclosed {
                position: template[..offset + open].chars().count() + 1,
            });
        };
        pieces.push(Piece::Var(after[..close].trim()));
        let consumed = open + 2 + close + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

fn check_shape(template: &str) -> Result<(), TemplateError> {
    if template.trim().is_empty() {
        return Err(TemplateError::Empty);
    }
    let len = template.chars().count();
    if len > MAX_TEMPLATE_CHARS {
        return Err(TemplateError::TooLong {
            len,
            max: MAX_TEMPLATE_CHARS,
        });
    }
    Ok(())
}

fn unknown(name: &str, allowed: impl Iterator<Item = impl AsRef<str>>) -> TemplateError {
    let allowed: Vec<String> = allowed.map(|a| format!("{{{{{}}}}}", a.as_ref())).collect();
    TemplateError::UnknownPlaceholder {
        name: name.to_owned(),
        allowed: allowed.join(", "),
    }
}

/// Fills `template` with `values`. A placeholder with no value is an error naming it.
pub fn render(template: &str, values: &BTreeMap<&str, String>) -> Result<String, TemplateError> {
    check_shape(template)?;
    let mut out = String::with_capacity(template.len() + 64);
    for piece in parse(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(name) => match values.get(name) {
                Some(v) => out.push_str(v),
                None => return Err(unknown(name, values.keys())),
            },
        }
    }
    Ok(out)
}

/// Checks a template a manager wrote for `rule`: not empty, braces closed, and only the rule's
/// placeholders ([`Rule::placeholders`]).
pub fn validate_template(rule: Rule, template: &str) -> Result<(), TemplateError> {
    check_shape(template)?;
    for piece in parse(template)? {
        if let Piece::Var(name) = piece
            && !rule.placeholders().contains(&name)
        {
            return Err(unknown(name, rule.placeholders().iter()));
        }
    }
    Ok(())
}

/// Sample values for every placeholder, for previews.
pub fn sample_values() -> BTreeMap<&'static str, String> {
    [
        ("nome", "Maria Souza"),
        ("apartamento", "A-302"),
        ("carregador", "Palmeiras 1"),
        ("conector", "1"),
        ("local", "Residencial Palmeiras"),
        ("inicio", "10/02 às 18:30"),
        ("fim", "10/02 às 21:40"),
        ("duracao", "3 h 10 min"),
        ("energia_kwh", "20,820"),
        ("ocioso_min", "25"),
        ("custo", "R$ 42,15"),
        ("custo_energia", "R$ 40,65"),
        ("taxa_ociosidade", "R$ 1,50"),
        ("tag", "5BE07D1A"),
        ("desde", "10/02 às 21:10"),
        ("lembrete", "1"),
        ("lembretes_max", "3"),
        (
            "motivo",
            "a recarga parou enquanto o veículo ainda carregava",
        ),
        ("erro", "GroundFailure"),
        ("quando", "10/02 às 18:30"),
        ("ciclos", "3"),
        ("campo", "chargePointList"),
        ("anterior", "5"),
        ("estado", "close"),
        ("pendentes", "12"),
        ("minutos", "20"),
        ("ref", "VQ7K2M9A"),
        ("mes", "02/2026"),
        ("versao", "1"),
        (
            "tabela",
            "Apartamento   Recargas   kWh        Total\nA-101         3          41,250     R$ 38,90\n\
             A-302         5          88,020     R$ 97,35\nsem morador   1          6,400      R$ 5,12",
        ),
        ("sessoes", "9"),
        ("kwh", "135,670"),
        ("kwh_ponta", "12,400"),
        ("kwh_fora_ponta", "28,850"),
        ("total", "R$ 141,37"),
        (
            "link",
            "Extrato completo: https://vetric.example.com/sites/jardim-palmeiras/statements?month=2026-02",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect()
}

/// The message `template` would produce for `rule` with sample data (the settings page).
pub fn preview(rule: Rule, template: &str) -> Result<String, TemplateError> {
    validate_template(rule, template)?;
    let all = sample_values();
    let values: BTreeMap<&str, String> = rule
        .placeholders()
        .iter()
        .map(|p| (*p, all.get(p).cloned().unwrap_or_default()))
        .collect();
    render(template, &values)
}

/// The text every site starts with (and gets back with "restaurar padrão"). The reference code
/// is appended by the planner, so templates need not mention `{{ref}}`.
pub fn default_template(rule: Rule) -> &'static str {
    match rule {
        Rule::SessionStarted => {
            "Olá, {{nome}}! A recarga do seu veículo começou no carregador *{{carregador}}* \
             ({{local}}) em {{inicio}}."
        }
        Rule::IdleStarted => {
            "{{nome}}, seu veículo terminou de carregar e está parado no carregador \
             *{{carregador}}* ({{local}}) desde {{desde}}. Por favor, libere a vaga para os \
             vizinhos."
        }
        Rule::IdleReminder => {
            "Lembrete {{lembrete}} de {{lembretes_max}}: {{nome}}, seu veículo continua parado \
             no carregador *{{carregador}}* ({{local}}) há {{ocioso_min}} min. Por favor, libere \
             a vaga."
        }
        Rule::SessionFinished => {
            "{{nome}}, sua recarga no carregador *{{carregador}}* ({{local}}) terminou em \
             {{fim}}.\nEnergia: {{energia_kwh}} kWh\nDuração: {{duracao}}\nTempo parado: \
             {{ocioso_min}} min\nCusto: *{{custo}}*"
        }
        Rule::SessionInterrupted => {
            "{{nome}}, sua recarga no carregador *{{carregador}}* ({{local}}) foi interrompida \
             em {{fim}}: {{motivo}}. Energia até a interrupção: {{energia_kwh}} kWh em \
             {{duracao}}. Confira o seu veículo."
        }
        Rule::ChargerFaulted => {
            "{{local}}: o carregador *{{carregador}}* (conector {{conector}}) está em falha \
             desde {{desde}}. Erro informado: {{erro}}."
        }
        Rule::ChargerOffline => {
            "{{local}}: o carregador *{{carregador}}* está sem comunicação (último sinal: \
             {{desde}})."
        }
        Rule::UnknownTag => {
            "{{local}}: a tag {{tag}}, que não pertence a nenhum morador, foi usada no \
             carregador *{{carregador}}* (conector {{conector}}) em {{quando}}. Cadastre-a na \
             página de moradores."
        }
        Rule::VendorDown => {
            "{{local}}: o fornecedor dos carregadores não responde desde {{desde}} ({{ciclos}} \
             ciclos seguidos com falha; último erro: {{erro}})."
        }
        Rule::VendorRecovered => {
            "{{local}}: o fornecedor dos carregadores voltou a responder (fora do ar desde \
             {{desde}}, {{ciclos}} ciclos com falha)."
        }
        Rule::VendorShapeChanged => {
            "{{local}}: a resposta do fornecedor mudou de formato (campo {{campo}}) em \
             {{quando}}. A leitura dos carregadores está parada até a correção."
        }
        Rule::ChargersZero => {
            "{{local}}: o fornecedor passou a listar zero carregadores (antes: {{anterior}}), \
             confirmado em {{quando}}."
        }
        Rule::GatewayDown => {
            "{{local}}: o gateway do WhatsApp está desconectado (estado: {{estado}}) desde \
             {{desde}}. Erro: {{erro}}. As mensagens aos moradores estão aguardando."
        }
        Rule::BacklogStale => {
            "{{local}}: {{pendentes}} mensagens aguardam envio; a mais antiga espera há \
             {{minutos}} min."
        }
        Rule::Test => {
            "Mensagem de teste do vetric ({{local}}). Se você a recebeu, as notificações estão \
             funcionando."
        }
        Rule::StatementIssuedManager => {
            "Olá,\n\nFoi emitido o extrato de recarga de {{mes}} de {{local}} (versão \
             {{versao}}).\n\n{{tabela}}\n\nTotal do mês: {{total}} ({{sessoes}} recargas, \
             {{kwh}} kWh).\n{{link}}"
        }
        Rule::StatementApartmentSummary => {
            "{{nome}}, o extrato de recarga de {{mes}} de {{local}} foi emitido. Apartamento \
             {{apartamento}}: {{sessoes}} recarga(s), {{kwh}} kWh (ponta {{kwh_ponta}}, fora \
             de ponta {{kwh_fora_ponta}}). Energia: {{custo_energia}}; ociosidade: \
             {{taxa_ociosidade}}. *Total: {{total}}*"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vals(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    #[test]
    fn renders_placeholders_and_keeps_markup() {
        let v = vals(&[("nome", "Maria"), ("custo", "R$ 1,00")]);
        assert_eq!(
            render("Oi, *{{nome}}*! {{ custo }} {x} }} fim", &v).unwrap(),
            "Oi, *Maria*! R$ 1,00 {x} }} fim"
        );
    }

    #[test]
    fn errors_name_the_problem_in_pt_br() {
        let v = vals(&[("nome", "Maria")]);
        let e = render("Oi {{nomee}}", &v).unwrap_err();
        assert_eq!(
            e,
            TemplateError::UnknownPlaceholder {
                name: "nomee".into(),
                allowed: "{{nome}}".into()
            }
        );
        assert!(
            e.to_string().contains("variável desconhecida {{nomee}}"),
            "{e}"
        );
        let e = render("Oi {{nome", &v).unwrap_err();
        assert_eq!(e, TemplateError::Unclosed { position: 4 });
        assert!(e.to_string().contains("sem fechar"));
        assert_eq!(render("  \n", &v).unwrap_err(), TemplateError::Empty);
        assert!(matches!(
            validate_template(Rule::SessionStarted, "{{custo}}"),
            Err(TemplateError::UnknownPlaceholder { name, .. }) if name == "custo"
        ));
        assert!(validate_template(Rule::SessionFinished, "{{custo}}").is_ok());
        assert_eq!(
            validate_template(Rule::Test, &"a".repeat(MAX_TEMPLATE_CHARS + 1)),
            Err(TemplateError::TooLong {
                len: MAX_TEMPLATE_CHARS + 1,
                max: MAX_TEMPLATE_CHARS
            })
        );
    }

    #[test]
    fn every_default_template_is_valid_and_previews() {
        for rule in Rule::ALL {
            validate_template(rule, default_template(rule)).unwrap();
            let text = preview(rule, default_template(rule)).unwrap();
            assert!(!text.contains("{{"), "{rule}: {text}");
        }
        let p = preview(
            Rule::SessionFinished,
            default_template(Rule::SessionFinished),
        )
        .unwrap();
        assert!(p.contains("R$ 42,15"), "{p}");
        // Every placeholder a rule offers has a sample.
        let samples = sample_values();
        for rule in Rule::ALL {
            for p in rule.placeholders() {
                assert!(samples.contains_key(p), "{rule}: no sample for {p}");
            }
        }
    }

    proptest! {
        #[test]
        fn render_and_validate_never_panic(s in ".{0,200}", braces in "[{}a-z ]{0,40}") {
            let v = vals(&[("nome", "Maria"), ("a", "x")]);
            let _ = render(&s, &v);
            let _ = render(&braces, &v);
            for rule in Rule::ALL {
                let _ = validate_template(rule, &s);
                let _ = preview(rule, &braces);
            }
        }

        #[test]
        fn text_without_braces_renders_verbatim(s in "[^{}]{1,200}") {
            prop_assume!(!s.trim().is_empty());
            prop_assert_eq!(render(&s, &BTreeMap::new()).unwrap(), s);
        }
    }
}
