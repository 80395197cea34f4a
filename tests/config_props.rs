//! Property tests: no text makes the duration parser or the configuration parser panic. A
//! bounded run (the case counts below) is part of every test run.

use std::time::Duration;

use aws_workflow_exporter::config::{inline_path, parse_duration, Config};
use proptest::prelude::*;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Duration-like text: numbers of any size, units, dots and stray characters.
fn duration_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "[0-9]{1,25}",
            Just("ms".to_owned()),
            Just("s".to_owned()),
            Just("m".to_owned()),
            Just("h".to_owned()),
            Just("d".to_owned()),
            Just(".".to_owned()),
            Just("...".to_owned()),
            "\\PC{0,2}",
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat())
}

/// A YAML value: a duration-like text, a number of any magnitude, or junk.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        duration_text(),
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        Just("1e-20".to_owned()),
        Just(".nan".to_owned()),
        Just("-.inf".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("~".to_owned()),
        "\\PC{0,12}".prop_map(|s| format!("{s:?}")),
    ]
}

/// A configuration file built from every key the file format has, each with a random value.
fn config_text() -> impl Strategy<Value = String> {
    let keys = [
        "poll_interval: {}",
        "aws_api:\n  max_attempts: {}\n  connect_timeout: {}\n  operation_timeout: {}\n  quota_share: {}",
        "targets:\n  - name: {}\n    regions: [{}]\n    role_arn: {}\n    external_id: {}\n    endpoint_url: {}\n    sts_endpoint_url: {}\n    account_id: {}",
        "sources:\n  sfn_map_runs:\n    poll_interval: {}\n    lookback: {}\n    retention: {}\n    state_machines:\n      name_regex: {}\n  transfer_workflows:\n    poll_interval: {}\n  appflow_flows:\n    poll_interval: {}\n    retention: {}",
    ];
    (
        proptest::collection::vec(value(), 24),
        proptest::bits::u8::masked(0b1111),
    )
        .prop_map(move |(values, present)| {
            let mut values = values.into_iter();
            keys.iter()
                .enumerate()
                .filter(|(i, _)| present & (1 << i) != 0)
                .map(|(_, k)| {
                    k.split("{}")
                        .enumerate()
                        .map(|(j, part)| {
                            if j == 0 {
                                part.to_owned()
                            } else {
                                format!("{}{part}", values.next().unwrap_or_default())
                            }
                        })
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn parse_duration_never_panics_and_sums_what_it_accepts(text in duration_text()) {
        if let Ok(d) = parse_duration(&text) {
            prop_assert!(d <= Duration::MAX);
            // Whatever parses is made of <number><unit> pairs only.
            prop_assert!(text.trim().chars().all(|c| c.is_ascii_digit() || "mshd".contains(c)));
        }
    }
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn the_config_parser_never_panics(text in config_text()) {
        let _ = Config::parse(&text, &inline_path());
    }

    #[test]
    fn arbitrary_text_never_panics_the_config_parser(text in "\\PC{0,200}") {
        let _ = Config::parse(&text, &inline_path());
    }
}
