//! The catalog a running server serves: every revision with the change number that published it, content files by name, and the handle that changes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::content::{FileDigests, payload};
use crate::fixture::{CatalogError, FixtureCatalog, FixtureUpdate, PublicationState, is_guid};
use crate::metadata;

/// A content file; digests are computed on first use.
#[derive(Debug)]
pub(crate) struct FileSpec {
    pub name: String,
    pub size: u64,
    digests: OnceLock<FileDigests>,
}

impl FileSpec {
    pub fn digests(&self) -> &FileDigests {
        self.digests
            .get_or_init(|| FileDigests::of(&payload(&self.name, self.size)))
    }
}

/// One revision as served.
#[derive(Debug)]
pub(crate) struct Revision {
    pub update: FixtureUpdate,
    /// The change number that published this revision (its LastChangedAnchor).
    pub changed_at: u64,
    /// 1-based position among all revisions ever published; drives `compress_every`.
    pub ordinal: u64,
    /// Content files, EULA file included.
    pub files: Vec<Arc<FileSpec>>,
}

impl Revision {
    /// The metadata XML, rendered now (cheap; digests are cached per file).
    pub fn render(&self) -> String {
        metadata::render(&self.update, |name, size| {
            self.files
                .iter()
                .find(|file| file.name == name)
                .map_or_else(
                    || FileDigests::of(&payload(name, size)),
                    |file| file.digests().clone(),
                )
        })
    }
}

/// All revisions plus the change counter.
#[derive(Debug)]
pub(crate) struct CatalogState {
    revisions: Vec<Arc<Revision>>,
    by_identity: HashMap<(String, u32), usize>,
    latest: HashMap<String, usize>,
    /// Update ids in the order they first appeared.
    order: Vec<String>,
    files: HashMap<String, Arc<FileSpec>>,
    /// The newest change number; the initial catalog is change 1.
    pub change_number: u64,
    /// Anchors below this were issued by an earlier server identity.
    pub epoch_start: u64,
}

impl CatalogState {
    pub fn new(catalog: FixtureCatalog) -> Self {
        let mut state = Self {
            revisions: Vec::with_capacity(catalog.updates.len()),
            by_identity: HashMap::with_capacity(catalog.updates.len()),
            latest: HashMap::with_capacity(catalog.updates.len()),
            order: Vec::with_capacity(catalog.updates.len()),
            files: HashMap::new(),
            change_number: 1,
            epoch_start: 1,
        };
        for update in catalog.updates {
            state.insert(update);
        }
        state
    }

    fn insert(&mut self, update: FixtureUpdate) {
        let files = update
            .content_files()
            .map(|(name, size)| {
                Arc::clone(self.files.entry(name.to_owned()).or_insert_with(|| {
                    Arc::new(FileSpec {
                        name: name.to_owned(),
                        size,
                        digests: OnceLock::new(),
                    })
                }))
            })
            .collect();
        let index = self.revisions.len();
        let key = (update.update_id.clone(), update.revision_number);
        if self
            .latest
            .insert(update.update_id.clone(), index)
            .is_none()
        {
            self.order.push(update.update_id.clone());
        }
        self.by_identity.insert(key, index);
        self.revisions.push(Arc::new(Revision {
            update,
            changed_at: self.change_number,
            ordinal: index as u64 + 1,
            files,
        }));
    }

    /// Latest revision of every update id, in first-appearance order.
    pub fn latest_revisions(&self) -> impl Iterator<Item = &Arc<Revision>> {
        self.order
            .iter()
            .filter_map(|id| self.latest.get(id))
            .filter_map(|&index| self.revisions.get(index))
    }

    pub fn latest(&self, update_id: &str) -> Option<&Arc<Revision>> {
        self.latest
            .get(update_id)
            .and_then(|&index| self.revisions.get(index))
    }

    pub fn revision(&self, update_id: &str, revision_number: u32) -> Option<Arc<Revision>> {
        self.by_identity
            .get(&(update_id.to_owned(), revision_number))
            .and_then(|&index| self.revisions.get(index))
            .cloned()
    }

    pub fn file(&self, name: &str) -> Option<Arc<FileSpec>> {
        self.files.get(name).cloned()
    }

    /// Publishes `update` as a new change.
    fn publish(&mut self, update: FixtureUpdate) {
        self.change_number += 1;
        self.insert(update);
    }

    /// Starts a new server identity: anchors issued so far become foreign.
    pub fn start_new_epoch(&mut self) {
        self.change_number += 1;
        self.epoch_start = self.change_number;
    }
}

/// Changes the catalog of a running [`crate::FakeUpstream`]. Every change gets a new change
/// number, so an incremental `GetRevisionIdList` returns exactly the changed revisions.
#[derive(Debug, Clone)]
pub struct CatalogHandle {
    pub(crate) state: Arc<Mutex<CatalogState>>,
}

impl CatalogHandle {
    pub(crate) fn lock(&self) -> MutexGuard<'_, CatalogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes a new revision of `update_id` (RevisionNumber + 1) whose titles end in
    /// " (rev. N)". Returns the new revision number.
    pub fn revise(&self, update_id: &str) -> Result<u32, CatalogError> {
        self.republish(update_id, |update| {
            for text in &mut update.localized {
                if let Some(cut) = text.title.find(" (rev. ") {
                    text.title.truncate(cut);
                }
                text.title = format!("{} (rev. {})", text.title, update.revision_number);
            }
        })
    }

    /// Publishes a new revision of `update_id` with `PublicationState="Expired"`. Returns the
    /// new revision number.
    pub fn expire(&self, update_id: &str) -> Result<u32, CatalogError> {
        self.republish(update_id, |update| {
            update.publication_state = PublicationState::Expired;
        })
    }

    /// Publishes a new update (its id must be new; file names must not clash).
    pub fn add(&self, update: FixtureUpdate) -> Result<(), CatalogError> {
        if !is_guid(&update.update_id) {
            return Err(CatalogError::InvalidUpdateId(update.update_id));
        }
        let mut update = update;
        update.update_id = update.update_id.to_ascii_lowercase();
        let mut state = self.lock();
        if state.latest.contains_key(&update.update_id) {
            return Err(CatalogError::DuplicateUpdate(update.update_id));
        }
        for (name, size) in update.content_files() {
            if state.files.get(name).is_some_and(|file| file.size != size) {
                return Err(CatalogError::FileNameClash(name.to_owned()));
            }
        }
        state.publish(update);
        Ok(())
    }

    /// The newest change number (the `N` of anchors issued now).
    pub fn change_number(&self) -> u64 {
        self.lock().change_number
    }

    /// The latest revision of `update_id`.
    pub fn latest(&self, update_id: &str) -> Option<FixtureUpdate> {
        self.lock()
            .latest(&update_id.to_ascii_lowercase())
            .map(|revision| revision.update.clone())
    }

    fn republish(
        &self,
        update_id: &str,
        change: impl FnOnce(&mut FixtureUpdate),
    ) -> Result<u32, CatalogError> {
        let mut state = self.lock();
        let mut update = state
            .latest(&update_id.to_ascii_lowercase())
            .map(|revision| revision.update.clone())
            .ok_or_else(|| CatalogError::UnknownUpdate(update_id.to_owned()))?;
        update.revision_number += 1;
        change(&mut update);
        let revision_number = update.revision_number;
        state.publish(update);
        Ok(revision_number)
    }
}
