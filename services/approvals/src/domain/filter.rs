//! Which updates a filter selects, and whether two auto-approval rules contradict each other.

use patchbay_proto::approvals::v1::{ApprovalRule, ApprovalStatus, UpdateFilter};
use patchbay_proto::catalog::v1::{Classification, Severity, UpdateDetails, UpdateKind};

use super::ApprovalError;

/// Whether the filter selects nothing in particular (and so every update).
pub fn filter_is_empty(filter: &UpdateFilter) -> bool {
    filter.vendors.is_empty()
        && filter.products.is_empty()
        && filter.classifications.is_empty()
        && filter.min_severity == 0
        && filter.kinds.is_empty()
        && filter.cve_ids.is_empty()
}

/// Refuses values no update can have (unknown enum values, blank text), so a typo does not make a
/// filter silently select nothing.
pub fn validate_filter(filter: &UpdateFilter) -> Result<(), ApprovalError> {
    let invalid = |what: &str| ApprovalError::InvalidInput(format!("the filter {what}"));
    if filter
        .vendors
        .iter()
        .chain(&filter.products)
        .chain(&filter.cve_ids)
        .any(|text| text.trim().is_empty())
    {
        return Err(invalid(
            "has an empty vendor, product or CVE; leave the list out to match any",
        ));
    }
    if filter
        .classifications
        .iter()
        .any(|&c| c == 0 || Classification::try_from(c).is_err())
    {
        return Err(invalid(
            "has an unknown classification; use one of critical, security, definition, feature-pack, service-pack, tool, update-rollup, update, driver, upgrade",
        ));
    }
    if filter.min_severity != 0 && Severity::try_from(filter.min_severity).is_err() {
        return Err(invalid(
            "has an unknown minimum severity; use low, moderate, important or critical",
        ));
    }
    if filter
        .kinds
        .iter()
        .any(|&k| k == 0 || UpdateKind::try_from(k).is_err())
    {
        return Err(invalid(
            "has an unknown kind; use first-party, third-party or windows",
        ));
    }
    Ok(())
}

/// Whether `filter` selects an update with these details. Each list left empty matches any value;
/// vendors, products and CVE ids compare case-insensitively; an update with no severity does not
/// pass a minimum severity.
pub fn matches(filter: &UpdateFilter, details: &UpdateDetails) -> bool {
    let text = |wanted: &[String], actual: &str| {
        wanted.is_empty() || wanted.iter().any(|w| w.trim().eq_ignore_ascii_case(actual))
    };
    text(&filter.vendors, &details.vendor)
        && text(&filter.products, &details.product)
        && (filter.classifications.is_empty()
            || filter.classifications.contains(&details.classification))
        && (filter.min_severity == 0
            || (details.severity != 0 && details.severity >= filter.min_severity))
        && (filter.kinds.is_empty() || filter.kinds.contains(&details.kind))
        && (filter.cve_ids.is_empty()
            || details.cve_ids.iter().any(|cve| text(&filter.cve_ids, cve)))
}

/// Whether some update could match both filters. Only the single-valued fields (vendor, product,
/// classification, kind) can rule that out: an update has several CVEs, and a severity at least as
/// high as both minimums always exists.
pub fn filters_overlap(a: &UpdateFilter, b: &UpdateFilter) -> bool {
    let texts = |x: &[String], y: &[String]| {
        x.is_empty()
            || y.is_empty()
            || x.iter()
                .any(|v| y.iter().any(|w| v.trim().eq_ignore_ascii_case(w.trim())))
    };
    let values =
        |x: &[i32], y: &[i32]| x.is_empty() || y.is_empty() || x.iter().any(|v| y.contains(v));
    texts(&a.vendors, &b.vendors)
        && texts(&a.products, &b.products)
        && values(&a.classifications, &b.classifications)
        && values(&a.kinds, &b.kinds)
}

/// Two rules conflict when one approves and the other declines, and some update could match both:
/// which one wins would then depend on order.
pub fn rules_conflict(a: &ApprovalRule, b: &ApprovalRule) -> bool {
    let opposite = (a.action == ApprovalStatus::Approved as i32
        && b.action == ApprovalStatus::Declined as i32)
        || (a.action == ApprovalStatus::Declined as i32
            && b.action == ApprovalStatus::Approved as i32);
    opposite
        && filters_overlap(
            &a.filter.clone().unwrap_or_default(),
            &b.filter.clone().unwrap_or_default(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openssl() -> UpdateDetails {
        UpdateDetails {
            vendor: "Debian".into(),
            product: "openssl".into(),
            kind: UpdateKind::ThirdParty as i32,
            classification: Classification::Security as i32,
            severity: Severity::Important as i32,
            cve_ids: vec!["CVE-2025-9230".into(), "CVE-2025-9231".into()],
            ..Default::default()
        }
    }

    fn rule(action: ApprovalStatus, filter: UpdateFilter) -> ApprovalRule {
        ApprovalRule {
            name: "r".into(),
            action: action as i32,
            filter: Some(filter),
        }
    }

    #[test]
    fn an_empty_filter_matches_everything() {
        assert!(filter_is_empty(&UpdateFilter::default()));
        assert!(matches(&UpdateFilter::default(), &openssl()));
        assert!(matches(&UpdateFilter::default(), &UpdateDetails::default()));
    }

    #[test]
    fn each_field_narrows_and_text_ignores_case() {
        let given = openssl();
        let cases = [
            (
                UpdateFilter {
                    vendors: vec!["debian".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                UpdateFilter {
                    vendors: vec!["Microsoft".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                UpdateFilter {
                    products: vec!["git".into(), "OpenSSL".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                UpdateFilter {
                    classifications: vec![Classification::Critical as i32],
                    ..Default::default()
                },
                false,
            ),
            (
                UpdateFilter {
                    classifications: vec![Classification::Security as i32],
                    ..Default::default()
                },
                true,
            ),
            (
                UpdateFilter {
                    min_severity: Severity::Important as i32,
                    ..Default::default()
                },
                true,
            ),
            (
                UpdateFilter {
                    min_severity: Severity::Critical as i32,
                    ..Default::default()
                },
                false,
            ),
            (
                UpdateFilter {
                    kinds: vec![UpdateKind::Windows as i32],
                    ..Default::default()
                },
                false,
            ),
            (
                UpdateFilter {
                    cve_ids: vec!["cve-2025-9231".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                UpdateFilter {
                    cve_ids: vec!["CVE-2024-1".into()],
                    ..Default::default()
                },
                false,
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(matches(&filter, &given), expected, "{filter:?}");
        }
        let unrated = UpdateDetails {
            severity: 0,
            ..openssl()
        };
        let min_low = UpdateFilter {
            min_severity: Severity::Low as i32,
            ..Default::default()
        };
        assert!(
            !matches(&min_low, &unrated),
            "no severity does not pass a minimum"
        );
    }

    #[test]
    fn opposite_rules_that_can_match_one_update_conflict() {
        let debian = UpdateFilter {
            vendors: vec!["Debian".into()],
            ..Default::default()
        };
        let microsoft = UpdateFilter {
            vendors: vec!["microsoft".into()],
            ..Default::default()
        };
        let critical = UpdateFilter {
            min_severity: Severity::Critical as i32,
            ..Default::default()
        };
        let by_cve = UpdateFilter {
            cve_ids: vec!["CVE-2025-1".into()],
            vendors: vec!["DEBIAN".into()],
            ..Default::default()
        };
        use ApprovalStatus::{Approved, Declined};
        assert!(rules_conflict(
            &rule(Approved, debian.clone()),
            &rule(Declined, critical.clone())
        ));
        assert!(rules_conflict(
            &rule(Declined, debian.clone()),
            &rule(Approved, by_cve)
        ));
        assert!(!rules_conflict(
            &rule(Approved, debian.clone()),
            &rule(Declined, microsoft)
        ));
        assert!(!rules_conflict(
            &rule(Approved, debian.clone()),
            &rule(Approved, critical)
        ));
        let security = UpdateFilter {
            classifications: vec![Classification::Security as i32],
            ..Default::default()
        };
        let drivers = UpdateFilter {
            classifications: vec![Classification::Driver as i32],
            ..Default::default()
        };
        assert!(!rules_conflict(
            &rule(Approved, security),
            &rule(Declined, drivers)
        ));
        assert!(filters_overlap(&debian, &UpdateFilter::default()));
    }

    #[test]
    fn filters_with_values_no_update_has_are_refused() {
        let bad = [
            UpdateFilter {
                vendors: vec![" ".into()],
                ..Default::default()
            },
            UpdateFilter {
                classifications: vec![0],
                ..Default::default()
            },
            UpdateFilter {
                classifications: vec![99],
                ..Default::default()
            },
            UpdateFilter {
                min_severity: 42,
                ..Default::default()
            },
            UpdateFilter {
                kinds: vec![7],
                ..Default::default()
            },
        ];
        for filter in bad {
            assert!(validate_filter(&filter).is_err(), "{filter:?}");
        }
        assert!(
            validate_filter(&UpdateFilter {
                vendors: vec!["Debian".into()],
                ..Default::default()
            })
            .is_ok()
        );
    }
}
