//! The disclosure half of [`PhiStore`]: disclosures to outside recipients
//! (S-AUD-9), their details sealed under the patient's data key like a
//! record's body, so erasing the patient leaves them unreadable too.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{DISCLOSURES, PhiStore, binding};
use crate::crypto::{Key, Phi};
use crate::error::{Error, Result};
use crate::model::{Change, Disclosure, DisclosureDetails, DisclosureRow, NewDisclosure};

/// How far ahead of this server's clock a disclosure time may be (clock
/// skew between the caller and the server).
const MAX_SKEW: chrono::Duration = chrono::Duration::minutes(5);

impl PhiStore {
    /// The change that records a disclosure of a patient's information,
    /// and the disclosure it records.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for missing, overlong or control-character
    /// details, or a disclosure time in the future; [`Error::NotFound`] for
    /// an unknown or erased patient.
    pub async fn prepare_disclosure(
        &self,
        patient_id: Uuid,
        new: NewDisclosure,
        recorded_by: Uuid,
    ) -> Result<(Change, Disclosure)> {
        new.details.expose().validate()?;
        let now = self.clock.now();
        let disclosed_at = new.disclosed_at.unwrap_or(now);
        if disclosed_at > now + MAX_SKEW {
            return Err(Error::invalid("disclosed_at must not be in the future"));
        }
        let (dek, _) = self.data_key(patient_id, "patient").await?;
        let id = Uuid::now_v7();
        let row = DisclosureRow {
            id,
            patient_id,
            disclosed_at,
            details: self.seal_doc(&dek, DISCLOSURES, id, patient_id, 1, new.details.expose())?,
            recorded_by,
            recorded_at: now,
        };
        let disclosure = Disclosure {
            id,
            patient_id,
            disclosed_at,
            details: new.details,
            recorded_by,
            recorded_at: now,
        };
        Ok((Change::InsertDisclosure(row), disclosure))
    }

    /// A patient's disclosures made at or after `since` (all when `None`), with ids after
    /// `after`, in id order, at most `limit`, decrypted.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown or erased patient;
    /// [`Error::Integrity`] when a disclosure fails to decrypt.
    pub async fn list_disclosures(
        &self,
        patient_id: Uuid,
        since: Option<DateTime<Utc>>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<Disclosure>> {
        let (dek, dek_version) = self.data_key(patient_id, "patient").await?;
        self.store
            .list_disclosures(patient_id, since, after, limit)
            .await?
            .into_iter()
            .map(|row| self.open_disclosure(&dek, dek_version, row))
            .collect()
    }

    fn open_disclosure(
        &self,
        dek: &Key,
        dek_version: i32,
        row: DisclosureRow,
    ) -> Result<Disclosure> {
        let binding = binding(DISCLOSURES, row.id, row.patient_id, 1, dek_version);
        let details: DisclosureDetails = self.open_sealed(dek, &binding, &row.details)?;
        Ok(Disclosure {
            id: row.id,
            patient_id: row.patient_id,
            disclosed_at: row.disclosed_at,
            details: Phi::new(details),
            recorded_by: row.recorded_by,
            recorded_at: row.recorded_at,
        })
    }
}
