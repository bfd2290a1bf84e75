//! Injected faults, hangs and garbled answers, cookie expiry and server identity changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::*;
use patchbay_wsus_upstream::{
    CONTENT_OPERATION, FakeUpstream, FixtureCatalog, Garble, InjectedFault, UpstreamOptions, ids,
};
use sha1::{Digest as _, Sha1};

fn is_well_formed(text: &str) -> bool {
    use quick_xml::events::Event;
    let mut reader = quick_xml::reader::NsReader::from_str(text);
    let mut depth = 0usize;
    loop {
        match reader.read_resolved_event() {
            Err(_) => return false,
            Ok((_, Event::Start(_))) => depth += 1,
            Ok((_, Event::End(_))) => depth -= 1,
            Ok((_, Event::Eof)) => return depth == 0,
            Ok(_) => {}
        }
    }
}

async fn sample_server(options: UpstreamOptions) -> FakeUpstream {
    FakeUpstream::start(FixtureCatalog::sample(), options)
        .await
        .expect("server starts")
}

#[tokio::test]
async fn injected_faults_answer_the_next_calls_then_stop() {
    let server = sample_server(UpstreamOptions::default()).await;
    let cookie = authorize(&server).await;
    server.fail_next(
        "GetConfigData",
        InjectedFault {
            error_code: Some("ServerBusy".to_owned()),
            message: "try later".to_owned(),
        },
        2,
    );
    server.fail_next(
        "GetConfigData",
        InjectedFault {
            error_code: None,
            message: "boom".to_owned(),
        },
        1,
    );
    for _ in 0..2 {
        let busy = call(&server, "GetConfigData", &cookie).await;
        assert_eq!(busy.status, 500);
        assert_eq!(busy.error_code().as_deref(), Some("ServerBusy"));
        assert!(busy.text().contains("<Message>try later</Message>"));
    }
    let bare = call(&server, "GetConfigData", &cookie).await;
    assert_eq!((bare.status, bare.error_code()), (500, None));
    assert!(bare.text().contains("<detail></detail>") && bare.text().contains("boom"));
    assert_eq!(call(&server, "GetConfigData", &cookie).await.status, 200);
    // Other operations were never affected.
    assert_eq!(
        server
            .requests()
            .iter()
            .filter(|r| r.operation == "GetConfigData")
            .count(),
        4
    );
}

#[tokio::test]
async fn a_hung_call_never_answers_until_the_next_one() {
    let server = sample_server(UpstreamOptions::default()).await;
    server.hang_next("GetAuthConfig", 1);
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        call(&server, "GetAuthConfig", ""),
    )
    .await;
    assert!(hung.is_err(), "the call must time out");
    assert_eq!(call(&server, "GetAuthConfig", "").await.status, 200);

    server.hang_next(CONTENT_OPERATION, 1);
    let path = "/Content/00/anything.cab";
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            http(&server.url(), "GET", path, &[], b"")
        )
        .await
        .is_err()
    );
    // Shutting down releases the hung handlers instead of waiting an hour.
    server.hang_next("GetAuthConfig", 1);
    let url = server.url();
    let pending = tokio::spawn(async move {
        http(
            &url,
            "POST",
            SERVER_SYNC_PATH,
            &[
                ("Content-Type", "text/xml"),
                (
                    "SOAPAction",
                    "\"http://www.microsoft.com/SoftwareDistribution/GetAuthConfig\"",
                ),
            ],
            soap11_envelope(patchbay_wsus_upstream::SERVER_SYNC_NS, "GetAuthConfig", "").as_bytes(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown does not wait for hung calls");
    let released = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("released")
        .expect("task");
    assert_eq!(released.status, 503);
}

#[tokio::test]
async fn garbled_answers() {
    let server = sample_server(UpstreamOptions::default()).await;
    let cookie = authorize(&server).await;

    server.garble_next("GetConfigData", Garble::MalformedXml, 1);
    let malformed = call(&server, "GetConfigData", &cookie).await;
    assert_eq!(malformed.status, 200);
    assert!(!is_well_formed(&malformed.text()), "{}", malformed.text());
    assert!(is_well_formed(
        &call(&server, "GetConfigData", &cookie).await.text()
    ));

    server.garble_next("GetConfigData", Garble::DoctypeBomb, 1);
    let bomb = call(&server, "GetConfigData", &cookie).await.text();
    assert!(bomb.contains("<!DOCTYPE lolz [") && bomb.contains("<!ENTITY lol9 \"&lol8;&lol8;"));
    assert!(bomb.contains("<soap:Body>&lol9;"));

    server.garble_next("GetConfigData", Garble::HttpError(503), 1);
    assert_eq!(call(&server, "GetConfigData", &cookie).await.status, 503);
    assert_eq!(call(&server, "GetConfigData", &cookie).await.status, 200);

    let some = vec![
        (ids::KB_CUMULATIVE_NEW.to_owned(), 200),
        (ids::MSRT.to_owned(), 200),
    ];
    server.garble_next("GetUpdateData", Garble::TruncatedCab, 1);
    let truncated = call(&server, "GetUpdateData", &update_ids_body(&cookie, &some))
        .await
        .text();
    let blobs = all_between(
        &truncated,
        "<XmlUpdateBlobCompressed>",
        "</XmlUpdateBlobCompressed>",
    );
    assert_eq!(blobs.len(), 2, "every update is sent compressed");
    assert!(
        blobs
            .iter()
            .all(|blob| decode_compressed_blob(blob).is_err())
    );
    let fine = call(&server, "GetUpdateData", &update_ids_body(&cookie, &some))
        .await
        .text();
    let (received, urls) = parse_update_data(&fine);
    assert_eq!(received.len(), 2);

    // WrongDigest: the downloaded bytes no longer match the Digest in the metadata.
    let (digest, url) = &urls[0];
    let path = url.replacen(&server.url(), "/", 1);
    server.garble_next(CONTENT_OPERATION, Garble::WrongDigest, 1);
    let wrong = http(&server.url(), "GET", &path, &[], b"").await;
    assert_eq!(wrong.status, 200);
    assert_ne!(BASE64.encode(Sha1::digest(&wrong.body)), *digest);
    let right = http(&server.url(), "GET", &path, &[], b"").await;
    assert_eq!(BASE64.encode(Sha1::digest(&right.body)), *digest);
    assert_eq!(wrong.body.len(), right.body.len());
    server.garble_next(CONTENT_OPERATION, Garble::HttpError(404), 1);
    assert_eq!(
        http(&server.url(), "GET", &path, &[], b"").await.status,
        404
    );
}

#[tokio::test]
async fn expired_cookies_are_invalid() {
    let server = sample_server(UpstreamOptions {
        cookie_lifetime: Duration::from_millis(300),
        ..UpstreamOptions::default()
    })
    .await;
    let cookie = authorize(&server).await;
    assert_eq!(call(&server, "GetConfigData", &cookie).await.status, 200);
    tokio::time::sleep(Duration::from_millis(450)).await;
    for operation in ["GetConfigData", "GetRevisionIdList", "GetUpdateData"] {
        let response = call(&server, operation, &cookie).await;
        assert_eq!(
            response.error_code().as_deref(),
            Some("InvalidCookie"),
            "{operation}"
        );
    }
    // Restarting the protocol gives a working cookie again.
    let fresh = authorize(&server).await;
    assert_eq!(call(&server, "GetConfigData", &fresh).await.status, 200);
}

#[tokio::test]
async fn a_changed_server_identity_invalidates_cookies_and_anchors() {
    let server = sample_server(UpstreamOptions::default()).await;
    let cookie = authorize(&server).await;
    let cookie_data = authorization_cookie(&server).await;
    let config = call(&server, "GetConfigData", &cookie).await.text();
    let config_anchor = between(&config, "<NewConfigAnchor>", "</NewConfigAnchor>")
        .expect("anchor")
        .to_owned();
    let (anchor, _) = revision_ids(&server, &cookie, &filter(false, None, &[], &[])).await;

    server.change_server_identity();
    assert_eq!(
        call(&server, "GetConfigData", &cookie)
            .await
            .error_code()
            .as_deref(),
        Some("InvalidCookie")
    );
    let old_auth = call(&server, "GetCookie", &get_cookie_body(&cookie_data, "1.20")).await;
    assert_eq!(
        old_auth.error_code().as_deref(),
        Some("InvalidAuthorizationCookie")
    );

    let cookie = authorize(&server).await;
    let stale_config = call(
        &server,
        "GetConfigData",
        &format!("{cookie}<configAnchor>{config_anchor}</configAnchor>"),
    )
    .await;
    assert_eq!(stale_config.error_code().as_deref(), Some("ServerChanged"));
    let stale = call(
        &server,
        "GetRevisionIdList",
        &format!("{cookie}{}", filter(false, Some(&anchor), &[], &[])),
    )
    .await;
    assert_eq!(stale.error_code().as_deref(), Some("ServerChanged"));
    let stale_config_list = call(
        &server,
        "GetRevisionIdList",
        &format!("{cookie}{}", filter(true, Some(&anchor), &[], &[])),
    )
    .await;
    assert_eq!(
        stale_config_list.error_code().as_deref(),
        Some("ServerChanged")
    );

    // After resetting its anchors the DSS gets everything again, then increments work.
    let (new_anchor, all) = revision_ids(&server, &cookie, &filter(false, None, &[], &[])).await;
    assert_eq!(all.len(), 15);
    let (_, nothing) = revision_ids(
        &server,
        &cookie,
        &filter(false, Some(&new_anchor), &[], &[]),
    )
    .await;
    assert!(nothing.is_empty());
    let fresh_config = call(&server, "GetConfigData", &cookie).await.text();
    let fresh_anchor = between(&fresh_config, "<NewConfigAnchor>", "</NewConfigAnchor>")
        .expect("anchor")
        .to_owned();
    let again = call(
        &server,
        "GetConfigData",
        &format!("{cookie}<configAnchor>{fresh_anchor}</configAnchor>"),
    )
    .await;
    assert_eq!(again.status, 200);
    // An anchor from the future was not issued by this server either.
    let future = call(
        &server,
        "GetRevisionIdList",
        &format!(
            "{cookie}{}",
            filter(false, Some("99,2024-01-01 00:00:00.000"), &[], &[])
        ),
    )
    .await;
    assert_eq!(future.error_code().as_deref(), Some("ServerChanged"));
}
