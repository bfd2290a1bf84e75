//! Import update sources through the public API and find them in the SOFTWARE UPDATES list.

use patchbay_proto::catalog::v1 as pb;
use patchbay_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use pb::import_apt_index_request::Part;

use crate::helpers::spawn_app;

const SECURITY_INDEX: &str = "\
Package: openssl
Version: 3.0.17-1~deb12u2
Architecture: amd64
Source: openssl
Size: 1434060

Package: git
Version: 1:2.39.5-0+deb12u2
Architecture: amd64
Size: 7264060
";

const KEV: &str = r#"{"catalogVersion": "test", "vulnerabilities": [
  {"cveID": "CVE-2025-48384", "vendorProject": "Git", "product": "Git", "vulnerabilityName": "Git Link Following",
   "dateAdded": "2025-08-25", "dueDate": "2025-09-15", "knownRansomwareCampaignUse": "Unknown"}]}"#;

async fn import(
    client: &mut CatalogServiceClient<tonic::transport::Channel>,
    file_name: &str,
    data: &[u8],
) -> pb::ImportSummary {
    let header = pb::AptIndexHeader {
        file_name: file_name.into(),
        ..Default::default()
    };
    let messages = vec![
        pb::ImportAptIndexRequest {
            part: Some(Part::Header(header)),
        },
        pb::ImportAptIndexRequest {
            part: Some(Part::Chunk(data[..10].to_vec())),
        },
        pb::ImportAptIndexRequest {
            part: Some(Part::Chunk(data[10..].to_vec())),
        },
    ];
    client
        .import_apt_index(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn imported_packages_and_kev_show_in_the_updates_list() {
    let app = spawn_app().await;
    let mut catalog = CatalogServiceClient::connect(app.url()).await.unwrap();
    let name = "deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages";
    let first = import(&mut catalog, name, SECURITY_INDEX.as_bytes()).await;
    assert_eq!(
        (first.entries_read, first.published, first.problems.len()),
        (2, 2, 0)
    );
    let again = import(&mut catalog, name, SECURITY_INDEX.as_bytes()).await;
    assert_eq!((again.published, again.unchanged), (0, 2));

    // The KEV entry has no update yet; attach the CVE to git by a revision of the index data.
    let kev = catalog
        .import_kev(pb::ImportKevRequest {
            json: KEV.as_bytes().to_vec(),
            source: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(kev.into_inner().published, 1);

    let list = catalog
        .list_updates(pb::ListUpdatesRequest {
            classification: pb::Classification::Security as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = list.updates.iter().map(|u| u.update_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "deb:git:1:2.39.5-0+deb12u2:amd64",
            "deb:openssl:3.0.17-1~deb12u2:amd64"
        ]
    );
    assert_eq!(list.total, 2);

    let shown = catalog
        .get_update(pb::GetUpdateRequest {
            update_id: "deb:openssl:3.0.17-1~deb12u2:amd64".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shown.revisions.len(), 1);
    assert_eq!(shown.update.unwrap().details.unwrap().vendor, "Debian");

    let missing = catalog
        .get_update(pb::GetUpdateRequest {
            update_id: "deb:nope:1:amd64".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let bad = catalog
        .import_kev(pb::ImportKevRequest {
            json: b"[1,2]".to_vec(),
            source: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(
        bad.message().contains("not a CISA KEV catalog"),
        "{}",
        bad.message()
    );
    app.stop().await.unwrap();
}
