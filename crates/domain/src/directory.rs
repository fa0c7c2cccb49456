//! Who owned which tag, and when: the tracker's only view of residents.
//!
//! A resident keeps several tags over time (an RFID card, an app tag) and a card can change hands
//! (a family moves out mid-month and the card goes to the next tenant). The store builds a
//! [`TagDirectory`] from its tables every ingest cycle and hands it to the tracker, which asks one
//! question only: *who owned this tag at this instant?* (the session's start). Keeping the
//! directory plain data keeps the tracker pure and lets tests build one in two lines.

use crate::Tag;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Just enough about a resident to notify them and to put the session on the right statement line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResidentRef {
    pub resident_id: i64,
    pub name: String,
    /// The apartment as shown (tower/block + unit), already formatted by the store.
    pub apartment: String,
}

/// One period during which a resident owned a tag: the half-open interval `[valid_from, valid_to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    pub resident: ResidentRef,
    pub valid_from: DateTime<Utc>,
    /// `None` while the resident still owns the tag.
    pub valid_to: Option<DateTime<Utc>>,
}

impl Ownership {
    /// Half-open on purpose: when a card changes hands at 12:00, a session starting at 12:00
    /// belongs to the new owner, and no instant belongs to both.
    pub fn covers(&self, instant: DateTime<Utc>) -> bool {
        self.valid_from <= instant && self.valid_to.is_none_or(|to| instant < to)
    }
}

/// Tag → ownership periods. Built by the store each cycle; read-only for the tracker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagDirectory {
    tags: BTreeMap<Tag, Vec<Ownership>>,
}

impl TagDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `resident` owned `tag` during `[valid_from, valid_to)`.
    pub fn insert(
        &mut self,
        tag: Tag,
        resident: ResidentRef,
        valid_from: DateTime<Utc>,
        valid_to: Option<DateTime<Utc>>,
    ) {
        self.tags.entry(tag).or_default().push(Ownership {
            resident,
            valid_from,
            valid_to,
        });
    }

    /// Builder form of [`Self::insert`], handy in tests and in the store's row loop.
    pub fn with(
        mut self,
        tag: Tag,
        resident: ResidentRef,
        valid_from: DateTime<Utc>,
        valid_to: Option<DateTime<Utc>>,
    ) -> Self {
        self.insert(tag, resident, valid_from, valid_to);
        self
    }

    /// The owner of `tag` at `instant`, if anyone owned it then.
    ///
    /// Overlapping periods are a data error the store should prevent; if they happen anyway the
    /// most recent assignment (latest `valid_from`) wins, because that is the one a manager made
    /// last and most likely meant.
    pub fn owner_at(&self, tag: &Tag, instant: DateTime<Utc>) -> Option<&ResidentRef> {
        self.tags
            .get(tag)?
            .iter()
            .filter(|o| o.covers(instant))
            .max_by_key(|o| o.valid_from)
            .map(|o| &o.resident)
    }

    /// Every ownership period of `tag` (empty when the tag was never assigned).
    pub fn ownerships(&self, tag: &Tag) -> &[Ownership] {
        self.tags.get(tag).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
    }

    fn resident(id: i64) -> ResidentRef {
        ResidentRef {
            resident_id: id,
            name: format!("Resident {id}"),
            apartment: format!("A-{id}"),
        }
    }

    #[test]
    fn a_card_that_changed_hands_belongs_to_whoever_held_it_at_the_instant() {
        let tag = Tag::parse("5be07d1a").unwrap();
        let dir = TagDirectory::new()
            .with(tag.clone(), resident(1), at(1, 0), Some(at(15, 12)))
            .with(tag.clone(), resident(2), at(15, 12), None);
        assert_eq!(dir.owner_at(&tag, at(1, 0)).unwrap().resident_id, 1);
        assert_eq!(dir.owner_at(&tag, at(15, 11)).unwrap().resident_id, 1);
        // Half-open: the hand-over instant belongs to the new owner only.
        assert_eq!(dir.owner_at(&tag, at(15, 12)).unwrap().resident_id, 2);
        assert_eq!(dir.owner_at(&tag, at(31, 0)).unwrap().resident_id, 2);
        assert!(
            dir.owner_at(&tag, at(1, 0) - chrono::TimeDelta::seconds(1))
                .is_none()
        );
        // Lookups are by normalised tag, so the other firmware's spelling finds the same card.
        assert!(
            dir.owner_at(&Tag::parse("5BE07D1A").unwrap(), at(2, 0))
                .is_some()
        );
        assert!(
            dir.owner_at(&Tag::parse("FFFF").unwrap(), at(2, 0))
                .is_none()
        );
    }

    #[test]
    fn overlapping_assignments_resolve_to_the_latest() {
        let tag = Tag::parse("AA").unwrap();
        let dir = TagDirectory::new()
            .with(tag.clone(), resident(1), at(1, 0), None)
            .with(tag.clone(), resident(2), at(10, 0), None);
        assert_eq!(dir.owner_at(&tag, at(5, 0)).unwrap().resident_id, 1);
        assert_eq!(dir.owner_at(&tag, at(11, 0)).unwrap().resident_id, 2);
    }
}
