//! The matching index: updates from catalog events, laid out for evaluation (interned names, per-package candidates sorted by pre-parsed version).
//!
//! Every string a device is matched on is interned once: package names, architectures, suites,
//! CVE ids, Windows products and KB articles map to `u32` ids. Debian updates live in one `Vec`
//! of [`Candidate`]s per package name, sorted by version, so a device's package is one hash
//! lookup plus a binary search. Windows updates are reached through their products.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::HashMap as StdHashMap;
use std::hash::{Hash, Hasher};

use patchbay_debian::Architecture;
use patchbay_proto::catalog::v1 as pb;

use super::version::Version;

/// The index's maps use foldhash: a fleet scan hashes every installed package name, and
/// SipHash (std's default) cost 15% of a scan. foldhash is still seeded randomly per process, and
/// keys only come from the catalog, never from devices.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

/// Id of the `all` architecture, interned first.
pub(crate) const ALL: u32 = 0;

/// Why an update takes no part in matching. The update is still counted by
/// [`MatchingIndex::len`], and its id can still supersede others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unmatchable {
    #[error("the update has no applicability (neither a Debian package nor a Windows update)")]
    NoApplicability,
    #[error("the Debian package name is empty")]
    EmptyPackage,
    #[error("Debian package {package}: version '{version}' is not a Debian version: {reason}")]
    InvalidVersion {
        package: String,
        version: String,
        reason: String,
    },
    #[error("Debian package {package}: {reason}")]
    InvalidArchitecture { package: String, reason: String },
    #[error(
        "the Windows update has no KB article, so the engine cannot tell whether it is installed"
    )]
    NoKbArticle,
    #[error("the Windows update applies to no product")]
    NoProducts,
}

/// Sizes of a [`MatchingIndex`], for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Updates upserted (matchable or not).
    pub updates: usize,
    pub debian: usize,
    pub windows: usize,
    /// Updates ignored for matching (see [`Unmatchable`]).
    pub unmatchable: usize,
    pub expired: usize,
    pub package_names: usize,
    pub cves: usize,
    pub known_exploited: usize,
}

/// One Debian update as matching sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Candidate {
    pub(crate) version: Version,
    /// Slot of the update.
    pub(crate) update: u32,
    pub(crate) architecture: u32,
    /// Id of the update's set of suites.
    pub(crate) suites: u32,
    pub(crate) expired: bool,
    /// How many CVE ids the update has. Up to [`INLINE_CVES`] of them are kept here, in the
    /// candidate's own cache line, so that walking the candidates newer than a device's version
    /// neither visits every update's slot nor follows a pointer per candidate (a separate
    /// allocation cost ~12 % of the matching loop's samples); longer lists are read from the
    /// slot (see [`MatchingIndex::candidate_cves`]).
    pub(crate) cve_count: u16,
    pub(crate) inline_cves: [u32; INLINE_CVES],
}

/// CVE ids a [`Candidate`] holds itself: most Debian updates fix one to three, and three keep a
/// candidate at 64 bytes.
pub(crate) const INLINE_CVES: usize = 3;

impl Candidate {
    fn new(
        version: Version,
        update: u32,
        architecture: u32,
        suites: u32,
        expired: bool,
        cves: &[u32],
    ) -> Self {
        let mut inline_cves = [0; INLINE_CVES];
        if let Some(inline) = inline_cves.get_mut(..cves.len()) {
            inline.copy_from_slice(cves);
        }
        Self {
            version,
            update,
            architecture,
            suites,
            expired,
            cve_count: u16::try_from(cves.len()).unwrap_or(u16::MAX),
            inline_cves,
        }
    }
}

/// A Windows update as matching sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct WindowsUpdate {
    /// The KB article as published, e.g. `KB5034441`.
    pub(crate) kb_article: Box<str>,
    /// Its interned key (see [`kb_key`]).
    pub(crate) kb: u32,
    pub(crate) products: Box<[u32]>,
    pub(crate) version: Box<str>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Matching {
    /// Not upserted yet, or unmatchable.
    None,
    /// A candidate in the list of this package name.
    Debian {
        name: u32,
    },
    Windows(Box<WindowsUpdate>),
}

/// Everything the index knows about one update id.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Slot {
    pub(crate) id: Box<str>,
    /// Set by `upsert`; slots created by `supersede` or `expire` for an id not published yet are
    /// not counted.
    pub(crate) published: bool,
    pub(crate) expired: bool,
    /// From `UpdateSuperseded`.
    pub(crate) superseded_by: Option<u32>,
    /// Slots whose details list this one in `supersedes`.
    pub(crate) superseded_by_details: Vec<u32>,
    /// This update's own `supersedes`, kept to undo the reverse edges on revision.
    pub(crate) supersedes: Box<[u32]>,
    pub(crate) cves: Box<[u32]>,
    pub(crate) matching: Matching,
}

impl Slot {
    fn new(id: &str) -> Self {
        Self {
            id: id.into(),
            published: false,
            expired: false,
            superseded_by: None,
            superseded_by_details: Vec::new(),
            supersedes: Box::default(),
            cves: Box::default(),
            matching: Matching::None,
        }
    }
}

/// Interns strings as dense `u32` ids.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub(crate) fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |name| name)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = id_of(self.names.len());
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }
}

/// A Debian package name and, right after it, the newest version any update of that name has
/// (empty while there is none), held in the table's entry itself when they fit.
///
/// Hashes and compares as its name's bytes, and borrows as them, so the name table is looked up by
/// `name.as_bytes()`. Finding a device's package thus also brings in the newest version's text:
/// most installed packages are up to date, and for those one comparison settles the package without
/// touching its candidate list (a scan is bound by such memory accesses, not by arithmetic).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(from = "StoredNameKey", into = "StoredNameKey")]
pub(crate) struct NameKey {
    text: KeyText,
    name_len: u32,
}

/// Bytes of name and newest version a [`NameKey`] keeps inline: most Debian names and versions fit
/// (`libreoffice-core` and `4:7.4.7-1+deb12u8` take 34), so that comparing a lookup's key reads the
/// table entry just loaded rather than a separate allocation, one dependent cache miss fewer for
/// every installed package a scan looks up. An entry is then 64 bytes, a cache line.
const INLINE_KEY: usize = 46;

#[derive(Debug, Clone)]
enum KeyText {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl KeyText {
    fn new(name: &[u8], newest: &[u8]) -> Self {
        let len = name.len() + newest.len();
        match u8::try_from(len) {
            Ok(short) if len <= INLINE_KEY => {
                let mut bytes = [0; INLINE_KEY];
                bytes[..name.len()].copy_from_slice(name);
                bytes[name.len()..len].copy_from_slice(newest);
                Self::Inline { len: short, bytes }
            }
            _ => Self::Heap([name, newest].concat().into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(&[]),
            Self::Heap(bytes) => bytes,
        }
    }
}

/// A [`NameKey`] as snapshots store it, the same since before keys were kept inline.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredNameKey {
    text: Box<str>,
    name_len: u32,
}

impl From<StoredNameKey> for NameKey {
    fn from(stored: StoredNameKey) -> Self {
        let name_len = (stored.name_len as usize).min(stored.text.len());
        let (name, newest) = stored.text.as_bytes().split_at(name_len);
        Self {
            text: KeyText::new(name, newest),
            name_len: u32::try_from(name_len).unwrap_or(u32::MAX),
        }
    }
}

impl From<NameKey> for StoredNameKey {
    fn from(key: NameKey) -> Self {
        // The bytes were joined from two `&str`s, so they are UTF-8.
        Self {
            text: String::from_utf8_lossy(key.text.as_bytes()).into(),
            name_len: key.name_len,
        }
    }
}

impl NameKey {
    fn new(name: &str, newest: &str) -> Self {
        Self {
            text: KeyText::new(name.as_bytes(), newest.as_bytes()),
            name_len: u32::try_from(name.len()).unwrap_or(u32::MAX),
        }
    }

    fn name(&self) -> &[u8] {
        self.text
            .as_bytes()
            .get(..self.name_len as usize)
            .unwrap_or(&[])
    }

    /// The newest candidate's version text, as stored in the index (trimmed).
    fn newest(&self) -> &[u8] {
        self.text
            .as_bytes()
            .get(self.name_len as usize..)
            .unwrap_or(&[])
    }
}

impl Borrow<[u8]> for NameKey {
    fn borrow(&self) -> &[u8] {
        self.name()
    }
}

impl Hash for NameKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

// By name only, as `Borrow` requires.
impl PartialEq for NameKey {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for NameKey {}

/// Debian package names interned as dense ids, each with its newest version (see [`NameKey`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct PackageNames {
    ids: HashMap<NameKey, u32>,
    names: Vec<Box<str>>,
}

impl PackageNames {
    /// The name's id and the text of its newest version.
    pub(crate) fn lookup(&self, name: &str) -> Option<(u32, &[u8])> {
        self.ids
            .get_key_value(name.as_bytes())
            .map(|(key, &id)| (id, key.newest()))
    }

    #[cfg(test)]
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name.as_bytes()).copied()
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name.as_bytes()) {
            return id;
        }
        let id = id_of(self.names.len());
        self.names.push(name.into());
        self.ids.insert(NameKey::new(name, ""), id);
        id
    }

    /// Records the newest version of `name` after its candidate list changed.
    fn set_newest(&mut self, name: u32, newest: &str) {
        let Some(text) = self.names.get(name as usize) else {
            return;
        };
        if self.ids.remove(text.as_bytes()).is_some() {
            self.ids.insert(NameKey::new(text, newest), name);
        }
    }
}

/// Each CVE's position in CVE order (year, then number, then text), computed once per set of CVEs:
/// a device's ~650 exposures are then sorted as plain integers, with no tie left to break by text.
/// Derived data: equal for any two indexes (it follows from fields that are compared), and reset
/// rather than cloned.
#[derive(Debug, Default)]
struct CveRanks(std::sync::OnceLock<Box<[u32]>>);

impl Clone for CveRanks {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for CveRanks {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Ids are `u32` to keep candidates small; four billion distinct strings do not fit in memory
/// anyway.
fn id_of(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// The updates of the catalog, laid out for matching devices.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MatchingIndex {
    pub(crate) slots: Vec<Slot>,
    pub(crate) slot_ids: HashMap<Box<str>, u32>,
    /// Debian package names; `candidates[name]` is sorted by version, then by update id
    /// descending (so that the last of equal versions is the smallest id).
    pub(crate) names: PackageNames,
    pub(crate) candidates: Vec<Vec<Candidate>>,
    /// Debian architectures; `all` is [`ALL`]. Few, so looked up by a linear scan.
    pub(crate) architectures: Vec<Box<str>>,
    pub(crate) suites: Interner,
    /// Distinct sets of suite ids that candidates are published in.
    pub(crate) suite_sets: Vec<Box<[u32]>>,
    suite_set_ids: HashMap<Box<[u32]>, u32>,
    pub(crate) cves: Interner,
    /// Indexed by CVE id: whether it is known exploited.
    pub(crate) known_exploited: Vec<bool>,
    /// CVE order as ranks, derived from `cves` when an evaluation first needs it after a new CVE
    /// (see [`CveRanks`]); never stored in snapshots.
    #[serde(skip)]
    cve_ranks: CveRanks,
    pub(crate) products: Interner,
    /// Windows updates by product id.
    pub(crate) product_updates: Vec<Vec<u32>>,
    /// Windows updates by KB key (several update ids may share a KB, e.g. one per architecture).
    pub(crate) kbs: Interner,
    pub(crate) kb_updates: Vec<Vec<u32>>,
    published: usize,
    unmatchable: usize,
}

impl Default for MatchingIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl MatchingIndex {
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            slot_ids: HashMap::default(),
            names: PackageNames::default(),
            candidates: Vec::new(),
            architectures: vec!["all".into()],
            suites: Interner::default(),
            suite_sets: Vec::new(),
            suite_set_ids: HashMap::default(),
            cves: Interner::default(),
            known_exploited: Vec::new(),
            cve_ranks: CveRanks::default(),
            products: Interner::default(),
            product_updates: Vec::new(),
            kbs: Interner::default(),
            kb_updates: Vec::new(),
            published: 0,
            unmatchable: 0,
        }
    }

    /// Adds an update, or replaces the details of one already known (a revision), from
    /// `UpdatePublished` or `UpdateRevised`. Supersession and expiry recorded earlier are kept.
    ///
    /// An update that cannot be matched (no applicability, an invalid Debian version, a Windows
    /// update without KB or products) is still counted and can still supersede others; the error
    /// says why it is ignored for matching.
    pub fn upsert(
        &mut self,
        update_id: &str,
        details: &pb::UpdateDetails,
    ) -> Result<(), Unmatchable> {
        let slot = self.slot(update_id);
        self.unlink(slot);

        let supersedes: Box<[u32]> = details.supersedes.iter().map(|id| self.slot(id)).collect();
        for &superseded in &supersedes {
            self.slots[superseded as usize]
                .superseded_by_details
                .push(slot);
        }
        let cves: Box<[u32]> = details.cve_ids.iter().map(|cve| self.cve(cve)).collect();
        let matching = self.link(slot, details, &cves);

        let entry = &mut self.slots[slot as usize];
        if !entry.published {
            entry.published = true;
            self.published += 1;
        }
        entry.supersedes = supersedes;
        entry.cves = cves;
        match matching {
            Ok(matching) => {
                entry.matching = matching;
                Ok(())
            }
            Err(error) => {
                self.unmatchable += 1;
                Err(error)
            }
        }
    }

    /// Records `UpdateSuperseded`: `superseded_by` replaces `update_id` (Windows; Debian
    /// updates are ordered by version instead).
    pub fn supersede(&mut self, update_id: &str, superseded_by: &str) {
        let by = self.slot(superseded_by);
        let slot = self.slot(update_id);
        self.slots[slot as usize].superseded_by = Some(by);
    }

    /// Records `UpdateExpired`: the update is never required again, whatever revision follows.
    pub fn expire(&mut self, update_id: &str) {
        let slot = self.slot(update_id);
        let entry = &mut self.slots[slot as usize];
        entry.expired = true;
        if let Matching::Debian { name } = entry.matching
            && let Some(list) = self.candidates.get_mut(name as usize)
        {
            for candidate in list.iter_mut().filter(|c| c.update == slot) {
                candidate.expired = true;
            }
        }
    }

    /// Records whether a CVE is in the Known Exploited Vulnerabilities catalog, from
    /// `VulnerabilityPublished`; it may arrive before or after the updates that fix it.
    pub fn set_known_exploited(&mut self, cve_id: &str, known: bool) {
        let cve = self.cve(cve_id);
        self.known_exploited[cve as usize] = known;
    }

    /// Updates upserted so far, matchable or not.
    pub fn len(&self) -> usize {
        self.published
    }

    pub fn is_empty(&self) -> bool {
        self.published == 0
    }

    pub fn stats(&self) -> IndexStats {
        let published = || self.slots.iter().filter(|s| s.published);
        IndexStats {
            updates: self.published,
            debian: published()
                .filter(|s| matches!(s.matching, Matching::Debian { .. }))
                .count(),
            windows: published()
                .filter(|s| matches!(s.matching, Matching::Windows(_)))
                .count(),
            unmatchable: self.unmatchable,
            expired: published().filter(|s| s.expired).count(),
            package_names: self.candidates.iter().filter(|c| !c.is_empty()).count(),
            cves: self.cves.len(),
            known_exploited: self.known_exploited.iter().filter(|&&k| k).count(),
        }
    }

    /// A candidate's CVE ids: its own copy when they fit in it, else its update's (the same list,
    /// set by the same `upsert`).
    pub(crate) fn candidate_cves<'a>(&'a self, candidate: &'a Candidate) -> &'a [u32] {
        match candidate
            .inline_cves
            .get(..usize::from(candidate.cve_count))
        {
            Some(inline) => inline,
            None => self
                .slots
                .get(candidate.update as usize)
                .map_or(&[], |slot| &slot.cves),
        }
    }

    /// The update id of a slot ("" for a slot that does not exist).
    pub(crate) fn update_id(&self, slot: u32) -> &str {
        self.slots.get(slot as usize).map_or("", |s| &s.id)
    }

    pub(crate) fn is_known_exploited(&self, cve: u32) -> bool {
        self.known_exploited
            .get(cve as usize)
            .copied()
            .unwrap_or(false)
    }

    /// The id of a Debian architecture name, if any update uses it.
    pub(crate) fn architecture(&self, name: &str) -> Option<u32> {
        self.architectures
            .iter()
            .position(|known| **known == *name)
            .map(id_of)
    }

    fn slot(&mut self, update_id: &str) -> u32 {
        if let Some(&slot) = self.slot_ids.get(update_id) {
            return slot;
        }
        let slot = id_of(self.slots.len());
        self.slots.push(Slot::new(update_id));
        self.slot_ids.insert(update_id.into(), slot);
        slot
    }

    fn cve(&mut self, cve_id: &str) -> u32 {
        let cve = self.cves.intern(cve_id);
        if self.known_exploited.len() <= cve as usize {
            self.known_exploited.resize(cve as usize + 1, false);
            self.cve_ranks = CveRanks::default();
        }
        cve
    }

    /// Each CVE's rank in CVE order (indexed by CVE id), computed on first use after the set of
    /// CVEs changed.
    pub(crate) fn cve_ranks(&self) -> &[u32] {
        self.cve_ranks.0.get_or_init(|| {
            let mut by_rank: Vec<u32> = (0..id_of(self.cves.len())).collect();
            // CVE ids by year, then number; others after them, by their text (see `cve_key`).
            by_rank.sort_by_cached_key(|&cve| {
                let name = self.cves.name(cve);
                (cve_key(name), name)
            });
            let mut rank = vec![0; by_rank.len()];
            for (position, &cve) in by_rank.iter().enumerate() {
                rank[cve as usize] = id_of(position);
            }
            rank.into()
        })
    }

    /// Removes what a previous revision of `slot` put into the index.
    fn unlink(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        let old_supersedes = std::mem::take(&mut entry.supersedes);
        let matching = std::mem::replace(&mut entry.matching, Matching::None);
        if entry.published && matches!(matching, Matching::None) {
            self.unmatchable -= 1;
        }
        for superseded in old_supersedes {
            self.slots[superseded as usize]
                .superseded_by_details
                .retain(|&by| by != slot);
        }
        match matching {
            Matching::None => {}
            Matching::Debian { name } => {
                if let Some(list) = self.candidates.get_mut(name as usize) {
                    list.retain(|candidate| candidate.update != slot);
                    let newest = list.last().map_or("", |c| c.version.as_str());
                    self.names.set_newest(name, newest);
                }
            }
            Matching::Windows(windows) => {
                for &product in &windows.products {
                    if let Some(list) = self.product_updates.get_mut(product as usize) {
                        list.retain(|&update| update != slot);
                    }
                }
                if let Some(list) = self.kb_updates.get_mut(windows.kb as usize) {
                    list.retain(|&update| update != slot);
                }
            }
        }
    }

    /// Puts `details`' applicability into the index for `slot`.
    fn link(
        &mut self,
        slot: u32,
        details: &pb::UpdateDetails,
        cves: &[u32],
    ) -> Result<Matching, Unmatchable> {
        use pb::update_details::Applicability;
        match &details.applicability {
            None => Err(Unmatchable::NoApplicability),
            Some(Applicability::Debian(debian)) => self.link_debian(slot, debian, cves),
            Some(Applicability::Windows(windows)) => self.link_windows(slot, windows, details),
        }
    }

    fn link_debian(
        &mut self,
        slot: u32,
        debian: &pb::DebianPackage,
        cves: &[u32],
    ) -> Result<Matching, Unmatchable> {
        if debian.package.is_empty() {
            return Err(Unmatchable::EmptyPackage);
        }
        let version =
            Version::parse(&debian.version).map_err(|reason| Unmatchable::InvalidVersion {
                package: debian.package.clone(),
                version: debian.version.clone(),
                reason,
            })?;
        let architecture = match self.architecture(&debian.architecture) {
            Some(id) => id,
            None => {
                debian
                    .architecture
                    .parse::<Architecture>()
                    .map_err(|error| Unmatchable::InvalidArchitecture {
                        package: debian.package.clone(),
                        reason: error.to_string(),
                    })?;
                self.architectures.push(debian.architecture.as_str().into());
                id_of(self.architectures.len() - 1)
            }
        };
        let mut suites: Vec<u32> = debian
            .suites
            .iter()
            .map(|s| self.suites.intern(s))
            .collect();
        suites.sort_unstable();
        suites.dedup();
        let suites = match self.suite_set_ids.get(suites.as_slice()) {
            Some(&id) => id,
            None => {
                let id = id_of(self.suite_sets.len());
                let suites: Box<[u32]> = suites.into();
                self.suite_sets.push(suites.clone());
                self.suite_set_ids.insert(suites, id);
                id
            }
        };

        let name = self.names.intern(&debian.package);
        if self.candidates.len() <= name as usize {
            self.candidates.resize_with(name as usize + 1, Vec::new);
        }
        let slots = &self.slots;
        let list = &mut self.candidates[name as usize];
        let id = &slots[slot as usize].id;
        // Sorted by version, then update id descending (see `MatchingIndex::candidates`).
        let position = list.partition_point(|c| {
            c.version
                .view()
                .cmp(&version.view())
                .then_with(|| id.cmp(&slots[c.update as usize].id))
                == Ordering::Less
        });
        list.insert(
            position,
            Candidate::new(
                version,
                slot,
                architecture,
                suites,
                slots[slot as usize].expired,
                cves,
            ),
        );
        let newest = list.last().map_or("", |c| c.version.as_str());
        self.names.set_newest(name, newest);
        Ok(Matching::Debian { name })
    }

    fn link_windows(
        &mut self,
        slot: u32,
        windows: &pb::WindowsApplicability,
        details: &pb::UpdateDetails,
    ) -> Result<Matching, Unmatchable> {
        let key = kb_key(&windows.kb_article);
        if key.is_empty() {
            return Err(Unmatchable::NoKbArticle);
        }
        let mut products: Vec<u32> = windows
            .product_ids
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| self.products.intern(p))
            .collect();
        products.sort_unstable();
        products.dedup();
        if products.is_empty() {
            return Err(Unmatchable::NoProducts);
        }
        if self.product_updates.len() < self.products.len() {
            self.product_updates
                .resize_with(self.products.len(), Vec::new);
        }
        for &product in &products {
            self.product_updates[product as usize].push(slot);
        }
        let kb = self.kbs.intern(key);
        if self.kb_updates.len() < self.kbs.len() {
            self.kb_updates.resize_with(self.kbs.len(), Vec::new);
        }
        self.kb_updates[kb as usize].push(slot);
        Ok(Matching::Windows(Box::new(WindowsUpdate {
            kb_article: windows.kb_article.trim().into(),
            kb,
            products: products.into(),
            version: details.version.as_str().into(),
        })))
    }
}

/// Sorts CVE ids numerically: `CVE-YYYY-N` is `YYYY << 40 | N` (so `CVE-2024-9999` comes before
/// `CVE-2024-10000`), anything else `u64::MAX`; equal keys are ordered by their text.
pub(crate) fn cve_key(id: &str) -> u64 {
    let number = |digits: &str, max_len: usize| {
        (!digits.is_empty()
            && digits.len() <= max_len
            && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse::<u64>().ok())
        .flatten()
    };
    id.strip_prefix("CVE-")
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(year, serial)| Some(number(year, 4)? << 40 | number(serial, 12)?))
        .unwrap_or(u64::MAX)
}

/// A KB article's number, the key both catalog and devices are matched on: `KB5034441`,
/// `kb5034441` and `5034441` are the same article.
pub(crate) fn kb_key(article: &str) -> &str {
    let article = article.trim();
    match article.get(..2) {
        Some(prefix) if prefix.eq_ignore_ascii_case("kb") => article[2..].trim_start(),
        _ => article,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::engine::reference_tests::{debian, windows};

    // A name table entry fills one cache line (see `INLINE_KEY`), and so does a candidate.
    const _: () = assert!(std::mem::size_of::<(NameKey, u32)>() == 64);
    const _: () = assert!(std::mem::size_of::<Candidate>() == 64);

    #[test]
    fn given_names_short_and_long_when_keyed_then_name_and_newest_read_back_and_store_as_before() {
        let long_version = format!("1:{}-1", "9".repeat(60));
        for (name, newest) in [
            ("bash", "5.2.15-2+b9"),
            ("bash", ""),
            ("libreoffice-core", "4:7.4.7-1+deb12u8"),
            ("x", long_version.as_str()),
            ("ünïcode-pkg", "1.0-1"),
        ] {
            let key = NameKey::new(name, newest);
            assert_eq!(key.name(), name.as_bytes());
            assert_eq!(key.newest(), newest.as_bytes());
            let inline = matches!(key.text, KeyText::Inline { .. });
            assert_eq!(
                inline,
                name.len() + newest.len() <= INLINE_KEY,
                "{name} {newest}"
            );
            // Snapshots hold the same fields as before keys were inline: the joined text and
            // the name's length.
            let stored = StoredNameKey::from(key.clone());
            assert_eq!(
                (&*stored.text, stored.name_len as usize),
                (format!("{name}{newest}").as_str(), name.len())
            );
            let back = NameKey::from(stored);
            assert_eq!((back.name(), back.newest()), (key.name(), key.newest()));
        }
        // A stored length past the text (a damaged snapshot) keeps the whole text as the name.
        let damaged = NameKey::from(StoredNameKey {
            text: "bash".into(),
            name_len: 99,
        });
        assert_eq!((damaged.name(), damaged.newest()), (&b"bash"[..], &b""[..]));
    }

    #[test]
    fn given_a_revision_when_upserted_then_it_replaces_the_previous_one() {
        let mut index = MatchingIndex::new();
        index
            .upsert("u1", &debian("bash", "5.2-1", "amd64", &["bookworm"], &[]))
            .unwrap();
        index
            .upsert("u1", &debian("bash", "5.2-2", "amd64", &["bookworm"], &[]))
            .unwrap();
        index
            .upsert("u2", &debian("zsh", "5.9-4", "amd64", &["bookworm"], &[]))
            .unwrap();
        assert_eq!(index.len(), 2);
        let bash = index.names.get("bash").unwrap();
        let versions: Vec<_> = index.candidates[bash as usize]
            .iter()
            .map(|c| c.version.as_str())
            .collect();
        assert_eq!(versions, ["5.2-2"]);

        // A revision moving the update to another package leaves nothing behind.
        index
            .upsert("u1", &debian("dash", "0.5-1", "amd64", &["bookworm"], &[]))
            .unwrap();
        assert!(index.candidates[bash as usize].is_empty());
        assert_eq!(index.stats().package_names, 2);
    }

    #[test]
    fn given_unmatchable_updates_when_upserted_then_they_are_counted_and_say_why() {
        let mut index = MatchingIndex::new();
        assert_eq!(
            index.upsert("none", &pb::UpdateDetails::default()),
            Err(Unmatchable::NoApplicability)
        );
        let error = index
            .upsert("bad", &debian("bash", "1.0-", "amd64", &["bookworm"], &[]))
            .unwrap_err();
        assert!(
            matches!(error, Unmatchable::InvalidVersion { .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("'1.0-' is not a Debian version"),
            "{error}"
        );
        assert!(matches!(
            index.upsert("arch", &debian("bash", "1.0", "amd 64", &[], &[])),
            Err(Unmatchable::InvalidArchitecture { .. })
        ));
        assert_eq!(
            index.upsert("kb", &windows("", &["p"], &[], &[])),
            Err(Unmatchable::NoKbArticle)
        );
        assert_eq!(
            index.upsert("products", &windows("KB1", &[], &[], &[])),
            Err(Unmatchable::NoProducts)
        );
        assert_eq!(index.len(), 5);
        assert_eq!(index.stats().unmatchable, 5);

        // Fixing one by a revision makes it matchable.
        index
            .upsert("bad", &debian("bash", "1.0-1", "amd64", &["bookworm"], &[]))
            .unwrap();
        let stats = index.stats();
        assert_eq!((stats.updates, stats.unmatchable, stats.debian), (5, 4, 1));
    }

    #[test]
    fn given_events_for_unpublished_ids_when_published_then_the_state_is_kept() {
        let mut index = MatchingIndex::new();
        index.expire("u1");
        index.supersede("w1", "w2");
        assert!(index.is_empty());
        index
            .upsert("u1", &debian("bash", "5.2-1", "amd64", &[], &[]))
            .unwrap();
        assert_eq!(index.len(), 1);
        assert!(index.candidates[0][0].expired);
    }

    #[test]
    fn candidates_stay_small() {
        // docs/scanning-engine.md quotes this size: one cache line.
        assert!(
            std::mem::size_of::<Candidate>() <= 64,
            "{}",
            std::mem::size_of::<Candidate>()
        );
    }

    #[test]
    fn cve_keys_order_by_year_then_number() {
        let mut ids = [
            "GHSA-xxxx",
            "CVE-2024-10000",
            "CVE-2023-99999",
            "CVE-2024-9999",
            "CVE-x-1",
            "CVE-2024-09999",
        ];
        ids.sort_by_key(|id| (cve_key(id), *id));
        assert_eq!(
            ids,
            [
                "CVE-2023-99999",
                "CVE-2024-09999",
                "CVE-2024-9999",
                "CVE-2024-10000",
                "CVE-x-1",
                "GHSA-xxxx"
            ]
        );
    }

    #[test]
    fn kb_keys_ignore_the_prefix_and_its_case() {
        assert_eq!(kb_key("KB5034441"), "5034441");
        assert_eq!(kb_key(" kb5034441 "), "5034441");
        assert_eq!(kb_key("5034441"), "5034441");
        assert_eq!(kb_key("KB"), "");
    }
}
