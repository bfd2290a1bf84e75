//! GetUpdateData (spec 3.1.4.6): the metadata of revisions and the URLs of their files.

use super::{
    Request, decode_base64, optional_text, parse_identity, push_cookie, push_identity, required,
    required_text,
};
use crate::blob::{self, BlobError};
use crate::error::WsusError;
use crate::operation::Operation;
use crate::soap;
use crate::types::{Cookie, FileUrl, SyncedRevision, UpdateData, UpdateIdentity};
use crate::wire;
use crate::xml::Element;

const OPERATION: Operation = Operation::GetUpdateData;

/// The request. Send at least one and at most `max_updates_per_request` ids (GetConfigData).
pub fn request(cookie: &Cookie, ids: &[UpdateIdentity]) -> Request {
    let mut body = Request::start(OPERATION);
    push_cookie(&mut body, "cookie", cookie);
    body.push_str("<updateIds>");
    for identity in ids {
        push_identity(&mut body, "UpdateIdentity", identity);
    }
    body.push_str("</updateIds>");
    Request::finish(OPERATION, body)
}

/// Reads the revisions and file URLs; compressed blobs are unpacked up to `max_blob_bytes`
/// each (see [`blob::DEFAULT_MAX_BLOB_BYTES`]).
///
/// One undecodable blob fails the whole answer with [`WsusError::Blob`] naming the revision:
/// a corrupt answer is requested again rather than stored in part.
pub fn parse_response(body: &[u8], max_blob_bytes: usize) -> Result<UpdateData, WsusError> {
    let text = soap::response_text(OPERATION, body)?;
    let response = soap::response_element(OPERATION, text)?;
    let result = soap::take_result(OPERATION, response)?;
    let mut updates = Vec::new();
    if let Some(list) = result.child("updates") {
        for data in list.children_named("ServerSyncUpdateData") {
            if !data.is_empty() {
                updates.push(synced_revision(text, data, max_blob_bytes)?);
            }
        }
    }
    let mut file_urls = Vec::new();
    if let Some(list) = result.child("fileUrls") {
        for url in list.children_named("ServerSyncUrlData") {
            if url.is_empty() {
                continue;
            }
            let digest = required_text(OPERATION, url, "FileDigest")?;
            file_urls.push(FileUrl {
                file_digest: decode_base64(OPERATION, "FileDigest", digest)?,
                mu_url: optional_text(url, "MUUrl").map(str::to_owned),
            });
        }
    }
    Ok(UpdateData { updates, file_urls })
}

fn synced_revision(
    source: &str,
    data: &Element,
    max_blob_bytes: usize,
) -> Result<SyncedRevision, WsusError> {
    let identity = parse_identity(OPERATION, required(OPERATION, data, "Id")?)?;
    let mut file_digests = Vec::new();
    if let Some(list) = data.child("FileDigestList") {
        for digest in list.children_named("base64Binary") {
            if !digest.is_empty() {
                file_digests.push(decode_base64(
                    OPERATION,
                    "base64Binary",
                    digest.trimmed_text(),
                )?);
            }
        }
    }
    let (xml, was_compressed) = match (
        data.child("XmlUpdateBlob"),
        data.child("XmlUpdateBlobCompressed"),
    ) {
        (Some(_), Some(_)) => {
            return Err(WsusError::invalid(
                OPERATION.name(),
                "XmlUpdateBlobCompressed",
                &identity.update_id,
                "is present next to XmlUpdateBlob; the spec allows only one of them",
            ));
        }
        (Some(inline), None) => (inline_blob(source, inline, &identity)?, false),
        (None, Some(compressed)) => {
            let blob_error = |source| WsusError::Blob {
                update: identity.clone(),
                source,
            };
            let bytes = wire::decode_base64(compressed.trimmed_text()).map_err(|error| {
                blob_error(BlobError::Base64 {
                    reason: error.to_string(),
                })
            })?;
            (
                blob::decode_compressed(&bytes, max_blob_bytes).map_err(blob_error)?,
                true,
            )
        }
        (None, None) => {
            return Err(WsusError::Missing {
                operation: OPERATION.name(),
                element: "XmlUpdateBlob",
            });
        }
    };
    Ok(SyncedRevision {
        identity,
        xml,
        was_compressed,
        file_digests,
    })
}

/// XmlUpdateBlob is an xsd:string, so it normally holds escaped XML text; the spec's sample
/// shows the `<upd:Update>` element inline instead, which is taken verbatim from the source.
fn inline_blob(
    source: &str,
    blob: &Element,
    identity: &UpdateIdentity,
) -> Result<String, WsusError> {
    let xml = if blob.children.is_empty() {
        blob.trimmed_text()
    } else {
        source.get(blob.inner.clone()).unwrap_or_default().trim()
    };
    if xml.is_empty() {
        return Err(WsusError::invalid(
            OPERATION.name(),
            "XmlUpdateBlob",
            &identity.update_id,
            "is empty for this update",
        ));
    }
    Ok(xml.to_owned())
}
