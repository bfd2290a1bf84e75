//! Each request builder's output, read back with an independent XML parser.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{Node, body_element};
use patchbay_wsus::messages::{
    get_auth_config, get_authorization_cookie, get_config_data, get_cookie, get_revision_id_list,
    get_update_data,
};
use patchbay_wsus::{
    AuthorizationCookie, Cookie, DSS_AUTH_NS, Endpoint, IdAndDelta, LanguageAndDelta, Operation,
    Request, SOFTWARE_DISTRIBUTION_NS, SoapVersion, SyncFilter, UpdateIdentity, WsusError,
};

const PRODUCT: &str = "6964aab4-c5b5-43bd-a17d-ffb4346a8e1d";
const CLASSIFICATION: &str = "0FA1201D-4330-4FA8-8AE9-B877473B6441";

fn cookie() -> Cookie {
    Cookie {
        expiration: "2026-03-01T10:20:30.1234567Z".parse().unwrap(),
        encrypted_data: (0..=255).collect(),
    }
}

fn body(request: &Request) -> Node {
    body_element(&request.envelope(SoapVersion::Soap11))
}

fn names(node: &Node) -> Vec<&str> {
    node.children.iter().map(|c| c.name.as_str()).collect()
}

fn assert_cookie(node: &Node) {
    assert_eq!(names(node), ["Expiration", "EncryptedData"]);
    assert_eq!(node.text_of("Expiration"), "2026-03-01T10:20:30.1234567Z");
    assert_eq!(
        STANDARD.decode(node.text_of("EncryptedData")).unwrap(),
        cookie().encrypted_data
    );
}

#[test]
fn get_auth_config_is_an_empty_element() {
    let request = get_auth_config::request();
    let node = body(&request);
    assert_eq!(
        (node.namespace.as_deref(), node.name.as_str()),
        (Some(SOFTWARE_DISTRIBUTION_NS), "GetAuthConfig")
    );
    assert!(node.children.is_empty());
    assert_eq!(request.endpoint(), Endpoint::ServerSync);
}

#[test]
fn get_authorization_cookie_escapes_and_uses_the_auth_namespace() {
    let request = get_authorization_cookie::request(
        "dss<1>&co.example",
        "adb2fe48-0b2e-451e-8fc8-44b29845b0c6",
    );
    let node = body(&request);
    assert_eq!(node.namespace.as_deref(), Some(DSS_AUTH_NS));
    assert_eq!(names(&node), ["accountName", "accountGuid"]);
    assert_eq!(node.text_of("accountName"), "dss<1>&co.example");
    assert_eq!(node.children[0].namespace.as_deref(), Some(DSS_AUTH_NS));
    assert_eq!(request.endpoint(), Endpoint::DssAuth);
    assert_eq!(
        request.soap_action_header(SoapVersion::Soap11).as_deref(),
        Some(
            "\"http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService/GetAuthorizationCookie\""
        )
    );
}

#[test]
fn get_cookie_sends_the_old_cookie_when_there_is_one() {
    let authorization = AuthorizationCookie {
        plugin_id: "DssTargeting".into(),
        cookie_data: vec![1, 2, 3, 250],
    };
    let first = body(&get_cookie::request(&authorization, None, "1.2"));
    assert_eq!(names(&first), ["authCookies", "protocolVersion"]);
    let plugin = first.child("authCookies").child("AuthorizationCookie");
    assert_eq!(plugin.text_of("PlugInId"), "DssTargeting");
    assert_eq!(
        STANDARD.decode(plugin.text_of("CookieData")).unwrap(),
        [1, 2, 3, 250]
    );
    assert_eq!(first.text_of("protocolVersion"), "1.2");

    let renewal = body(&get_cookie::request(
        &authorization,
        Some(&cookie()),
        "1.20",
    ));
    assert_eq!(
        names(&renewal),
        ["authCookies", "oldCookie", "protocolVersion"]
    );
    assert_cookie(renewal.child("oldCookie"));
    assert_eq!(renewal.text_of("protocolVersion"), "1.20");
}

#[test]
fn get_config_data_sends_the_anchor_only_after_the_first_call() {
    let first = body(&get_config_data::request(&cookie(), None));
    assert_eq!(names(&first), ["cookie"]);
    assert_cookie(first.child("cookie"));
    let later = body(&get_config_data::request(
        &cookie(),
        Some("14030,2006-06-08 15:38:16.022"),
    ));
    assert_eq!(names(&later), ["cookie", "configAnchor"]);
    // Whitespace is dropped by the test parser; the anchor goes out unchanged.
    assert_eq!(
        later.text_of("configAnchor"),
        "14030,2006-06-0815:38:16.022"
    );
}

#[test]
fn get_revision_id_list_writes_the_filter_in_schema_order() {
    let filter = SyncFilter {
        anchor: Some("4742,2006-05-26".into()),
        get_config: false,
        get_63_language_only: true,
        categories: vec![IdAndDelta {
            id: PRODUCT.into(),
            delta: true,
        }],
        classifications: vec![IdAndDelta {
            id: CLASSIFICATION.into(),
            delta: false,
        }],
        languages: vec![LanguageAndDelta {
            id: 1033,
            delta: false,
        }],
    };
    let node = body(&get_revision_id_list::request(&cookie(), &filter).unwrap());
    assert_eq!(names(&node), ["cookie", "filter"]);
    assert_cookie(node.child("cookie"));
    let sent = node.child("filter");
    assert_eq!(
        names(sent),
        [
            "Anchor",
            "GetConfig",
            "Get63LanguageOnly",
            "Categories",
            "Classifications",
            "Languages"
        ]
    );
    assert_eq!(sent.text_of("GetConfig"), "false");
    assert_eq!(sent.text_of("Get63LanguageOnly"), "true");
    let category = sent.child("Categories").child("IdAndDelta");
    assert_eq!(
        (category.text_of("Id"), category.text_of("Delta")),
        (PRODUCT, "true")
    );
    let classification = sent.child("Classifications").child("IdAndDelta");
    assert_eq!(classification.text_of("Id"), CLASSIFICATION.to_lowercase());
    let language = sent.child("Languages").child("LanguageAndDelta");
    assert_eq!(
        (language.text_of("Id"), language.text_of("Delta")),
        ("1033", "false")
    );
}

#[test]
fn a_config_filter_sends_only_what_it_has() {
    let filter = SyncFilter {
        get_config: true,
        get_63_language_only: true,
        ..SyncFilter::default()
    };
    let node = body(&get_revision_id_list::request(&cookie(), &filter).unwrap());
    assert_eq!(
        names(node.child("filter")),
        ["GetConfig", "Get63LanguageOnly"]
    );
}

#[test]
fn an_unpaired_filter_is_refused_before_sending() {
    let filter = SyncFilter {
        categories: vec![IdAndDelta {
            id: PRODUCT.into(),
            delta: false,
        }],
        ..SyncFilter::default()
    };
    let error = get_revision_id_list::request(&cookie(), &filter).unwrap_err();
    assert!(
        matches!(
            &error,
            WsusError::InvalidRequest {
                operation: "GetRevisionIdList",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("1 categories and 0 classifications"),
        "{error}"
    );
}

#[test]
fn get_update_data_lists_the_ids_in_order() {
    let ids = [
        UpdateIdentity::new(PRODUCT, 200).unwrap(),
        UpdateIdentity::new(CLASSIFICATION, 1).unwrap(),
    ];
    let node = body(&get_update_data::request(&cookie(), &ids));
    assert_eq!(names(&node), ["cookie", "updateIds"]);
    let sent: Vec<(String, String)> = node
        .child("updateIds")
        .children_named("UpdateIdentity")
        .into_iter()
        .map(|id| {
            (
                id.text_of("UpdateID").to_owned(),
                id.text_of("RevisionNumber").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            (PRODUCT.to_owned(), "200".to_owned()),
            (CLASSIFICATION.to_lowercase(), "1".to_owned())
        ]
    );
}

#[test]
fn every_request_names_its_operation_and_namespace() {
    let authorization = AuthorizationCookie {
        plugin_id: "DssTargeting".into(),
        cookie_data: vec![1],
    };
    let requests = [
        get_auth_config::request(),
        get_authorization_cookie::request("dss.example", PRODUCT),
        get_cookie::request(&authorization, None, "1.2"),
        get_config_data::request(&cookie(), None),
        get_revision_id_list::request(&cookie(), &SyncFilter::default()).unwrap(),
        get_update_data::request(&cookie(), &[]),
    ];
    for (request, operation) in requests.iter().zip(Operation::ALL) {
        assert_eq!(request.operation, operation);
        let node = body(request);
        assert_eq!(node.name, operation.name());
        assert_eq!(node.namespace.as_deref(), Some(operation.namespace()));
        for version in [SoapVersion::Soap11, SoapVersion::Soap12] {
            assert!(
                request
                    .envelope(version)
                    .starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>")
            );
            assert_eq!(
                request.content_type(version),
                version.content_type(operation.soap_action())
            );
        }
    }
}
