//! Response shapes beyond the spec's samples: SOAP 1.2, escaped blobs, file URLs, nil entries and bad values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use patchbay_wsus::messages::{get_config_data, get_cookie, get_revision_id_list, get_update_data};
use patchbay_wsus::{DEFAULT_MAX_BLOB_BYTES, UpdateIdentity, UpdateType, WsusError};

fn soap11(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

const SHA1_A: &str = "2jmj7l5rSw0yVb/vlWAYkK/YBwk=";
const SHA1_B: &str = "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=";

fn update_data(updates: &str) -> String {
    soap11(&format!(
        r#"<GetUpdateDataResponse xmlns="http://www.microsoft.com/SoftwareDistribution"><GetUpdateDataResult>
             <updates>{updates}</updates>
             <fileUrls>
               <ServerSyncUrlData><FileDigest>{SHA1_A}</FileDigest><MUUrl>http://download.windowsupdate.com/c/msdownload/update/software/secu/2024/01/a.cab</MUUrl><UssUrl>ignored</UssUrl></ServerSyncUrlData>
               <ServerSyncUrlData><FileDigest>{SHA1_B}</FileDigest></ServerSyncUrlData>
               <ServerSyncUrlData xsi:nil="true"/>
             </fileUrls>
           </GetUpdateDataResult></GetUpdateDataResponse>"#
    ))
}

const ESCAPED_UPDATE: &str = r#"<ServerSyncUpdateData>
    <Id><UpdateID>AB0A7DE3-1A7E-4A6B-9F1B-0C6C2B7E0F11</UpdateID><RevisionNumber>201</RevisionNumber></Id>
    <XmlUpdateBlob>&lt;upd:Update xmlns:upd="http://schemas.microsoft.com/msus/2002/12/Update"&gt;&lt;upd:UpdateIdentity UpdateID="ab0a7de3-1a7e-4a6b-9f1b-0c6c2b7e0f11" RevisionNumber="201" /&gt;&lt;upd:Properties UpdateType="Software" /&gt;&lt;upd:LocalizedPropertiesCollection&gt;&lt;upd:LocalizedProperties&gt;&lt;upd:Language&gt;en&lt;/upd:Language&gt;&lt;upd:Title&gt;Fix for A &amp;amp; B&lt;/upd:Title&gt;&lt;/upd:LocalizedProperties&gt;&lt;/upd:LocalizedPropertiesCollection&gt;&lt;/upd:Update&gt;</XmlUpdateBlob>
    <FileDigestList><base64Binary>2jmj7l5rSw0yVb/vlWAYkK/YBwk=</base64Binary><base64Binary>qZk+NkcGgWq6PiVxeFDCbJzQ2J0=</base64Binary></FileDigestList>
  </ServerSyncUpdateData>"#;

#[test]
fn escaped_blobs_digests_and_file_urls() {
    let body = update_data(&format!(
        "{ESCAPED_UPDATE}<ServerSyncUpdateData xsi:nil=\"true\" />"
    ));
    let data = get_update_data::parse_response(body.as_bytes(), DEFAULT_MAX_BLOB_BYTES).unwrap();
    assert_eq!(data.updates.len(), 1, "the nil entry is skipped");
    let revision = &data.updates[0];
    assert_eq!(
        revision.identity,
        UpdateIdentity {
            update_id: "ab0a7de3-1a7e-4a6b-9f1b-0c6c2b7e0f11".into(),
            revision_number: 201
        }
    );
    assert!(!revision.was_compressed);
    assert_eq!(revision.file_digests.len(), 2);
    assert_eq!(revision.file_digests[0].len(), 20);
    let metadata = revision.metadata().unwrap();
    assert_eq!(metadata.identity, revision.identity);
    assert_eq!(metadata.update_type, UpdateType::Software);
    assert_eq!(metadata.title(&[]), Some("Fix for A & B"));

    assert_eq!(data.file_urls.len(), 2);
    assert_eq!(data.file_urls[0].file_digest, revision.file_digests[0]);
    assert!(
        data.file_urls[0]
            .mu_url
            .as_deref()
            .unwrap()
            .ends_with("/a.cab")
    );
    assert_eq!(data.file_urls[1].mu_url, None);
}

#[test]
fn cdata_blobs_are_read_too() {
    let update = r#"<ServerSyncUpdateData><Id><UpdateID>ab0a7de3-1a7e-4a6b-9f1b-0c6c2b7e0f11</UpdateID><RevisionNumber>1</RevisionNumber></Id>
        <XmlUpdateBlob><![CDATA[<Update><UpdateIdentity UpdateID="ab0a7de3-1a7e-4a6b-9f1b-0c6c2b7e0f11" RevisionNumber="1"/><Properties UpdateType="Driver"/></Update>]]></XmlUpdateBlob></ServerSyncUpdateData>"#;
    let data =
        get_update_data::parse_response(update_data(update).as_bytes(), DEFAULT_MAX_BLOB_BYTES)
            .unwrap();
    assert_eq!(
        data.updates[0].metadata().unwrap().update_type,
        UpdateType::Driver
    );
}

#[test]
fn a_revision_needs_exactly_one_blob() {
    let both = r#"<ServerSyncUpdateData><Id><UpdateID>ab0a7de3-1a7e-4a6b-9f1b-0c6c2b7e0f11</UpdateID><RevisionNumber>1</RevisionNumber></Id>
        <XmlUpdateBlob>x</XmlUpdateBlob><XmlUpdateBlobCompressed>TVNDRg==</XmlUpdateBlobCompressed></ServerSyncUpdateData>"#;
    assert!(matches!(
        get_update_data::parse_response(update_data(both).as_bytes(), DEFAULT_MAX_BLOB_BYTES),
        Err(WsusError::Invalid {
            element: "XmlUpdateBlobCompressed",
            ..
        })
    ));
    let neither = r#"<ServerSyncUpdateData><Id><UpdateID>ab0a7de3-1a7e-4a6b-9f1b-0c6c2b7e0f11</UpdateID><RevisionNumber>1</RevisionNumber></Id></ServerSyncUpdateData>"#;
    assert!(matches!(
        get_update_data::parse_response(update_data(neither).as_bytes(), DEFAULT_MAX_BLOB_BYTES),
        Err(WsusError::Missing {
            element: "XmlUpdateBlob",
            ..
        })
    ));
    let no_id = "<ServerSyncUpdateData><XmlUpdateBlob>x</XmlUpdateBlob></ServerSyncUpdateData>";
    assert!(matches!(
        get_update_data::parse_response(update_data(no_id).as_bytes(), DEFAULT_MAX_BLOB_BYTES),
        Err(WsusError::Missing { element: "Id", .. })
    ));
}

#[test]
fn soap12_envelopes_with_other_prefixes() {
    let body = r#"<?xml version="1.0" encoding="utf-8"?>
        <env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body>
          <sd:GetCookieResponse xmlns:sd="http://www.microsoft.com/SoftwareDistribution"><sd:GetCookieResult>
            <sd:Expiration>2030-01-02T03:04:05Z</sd:Expiration><sd:EncryptedData>AQID</sd:EncryptedData>
          </sd:GetCookieResult></sd:GetCookieResponse>
        </env:Body></env:Envelope>"#;
    let cookie = get_cookie::parse_response(body.as_bytes()).unwrap();
    assert_eq!(cookie.expiration.to_rfc3339(), "2030-01-02T03:04:05+00:00");
    assert_eq!(cookie.encrypted_data, [1, 2, 3]);
}

#[test]
fn bad_values_are_named() {
    let cookie = |expiration: &str| {
        soap11(&format!(
            "<GetCookieResponse><GetCookieResult><Expiration>{expiration}</Expiration><EncryptedData>AQID</EncryptedData></GetCookieResult></GetCookieResponse>"
        ))
    };
    assert!(matches!(
        get_cookie::parse_response(cookie("next tuesday").as_bytes()),
        Err(WsusError::Invalid {
            element: "Expiration",
            ..
        })
    ));
    assert!(matches!(
        get_cookie::parse_response(cookie("").as_bytes()),
        Err(WsusError::Missing {
            element: "Expiration",
            ..
        })
    ));

    let config = |max: &str, catalog_only: &str| {
        soap11(&format!(
            "<GetConfigDataResponse><GetConfigDataResult><CatalogOnlySync>{catalog_only}</CatalogOnlySync><LazySync>0</LazySync><ServerHostsPsfFiles>1</ServerHostsPsfFiles><MaxNumberOfUpdatesPerRequest>{max}</MaxNumberOfUpdatesPerRequest><NewConfigAnchor>a</NewConfigAnchor><ProtocolVersion>1.20</ProtocolVersion></GetConfigDataResult></GetConfigDataResponse>"
        ))
    };
    let parsed = get_config_data::parse_response(config("50", "false").as_bytes()).unwrap();
    assert!(!parsed.catalog_only_sync && !parsed.lazy_sync && parsed.server_hosts_psf_files);
    assert_eq!(parsed.protocol_version.as_deref(), Some("1.20"));
    assert!(parsed.languages.is_empty());
    for max in ["0", "-5", "lots"] {
        let error = get_config_data::parse_response(config(max, "false").as_bytes()).unwrap_err();
        assert!(
            matches!(
                &error,
                WsusError::Invalid {
                    element: "MaxNumberOfUpdatesPerRequest",
                    ..
                }
            ),
            "{max}: {error:?}"
        );
    }
    assert!(matches!(
        get_config_data::parse_response(config("50", "yes").as_bytes()),
        Err(WsusError::Invalid {
            element: "CatalogOnlySync",
            ..
        })
    ));

    let list = |inner: &str| {
        soap11(&format!(
            "<GetRevisionIdListResponse><GetRevisionIdListResult>{inner}</GetRevisionIdListResult></GetRevisionIdListResponse>"
        ))
    };
    assert!(matches!(
        get_revision_id_list::parse_response(list("<NewRevisions/>").as_bytes()),
        Err(WsusError::Missing {
            element: "Anchor",
            ..
        })
    ));
    let empty =
        get_revision_id_list::parse_response(list("<Anchor>1</Anchor>").as_bytes()).unwrap();
    assert!(empty.new_revisions.is_empty());
    let bad_guid = list(
        "<Anchor>1</Anchor><NewRevisions><UpdateIdentity><UpdateID>not-a-guid</UpdateID><RevisionNumber>1</RevisionNumber></UpdateIdentity></NewRevisions>",
    );
    assert!(matches!(
        get_revision_id_list::parse_response(bad_guid.as_bytes()),
        Err(WsusError::Invalid {
            element: "UpdateID",
            ..
        })
    ));
    let no_result = soap11("<GetRevisionIdListResponse/>");
    assert!(matches!(
        get_revision_id_list::parse_response(no_result.as_bytes()),
        Err(WsusError::Missing {
            element: "GetRevisionIdListResult",
            ..
        })
    ));
}
