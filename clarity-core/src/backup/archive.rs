//! The archive file: a plaintext header, the logical rows encrypted in
//! chunks, and a signed manifest at the end.
//!
//! ```text
//! "CLRTYBK1" | u32 header length | header JSON
//! chunk*     : u8 final flag | u32 length | AES-256-GCM ciphertext
//! trailer    : manifest JSON | u32 manifest length | HMAC-SHA-256 (32) | "CLRTYEND"
//! ```
//!
//! The archive key and the manifest key are derived (HKDF-SHA-256) from the
//! key provider's root secret and the archive's random id, so each archive has
//! keys of its own and only the holder of the store's keys can read or sign
//! one. Chunk nonces count up from zero (unique per key); each chunk's
//! associated data names the archive, the chunk's index and whether it is the
//! last, so reordered, dropped, truncated or appended chunks fail to decrypt.
//! The manifest pins the header, the ciphertext and every table's rows by
//! SHA-256 and is signed with HMAC-SHA-256.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::needs::KekNeeds;
use super::schema::{self, Table, Value, io_error, unwrap_io};
use super::{Manifest, TableSummary};
use crate::crypto::schedule::{self, SubKey};
use crate::crypto::{Key, RootRecord};
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"CLRTYBK1";
const END_MAGIC: &[u8; 8] = b"CLRTYEND";
/// Plaintext bytes per chunk.
const CHUNK: usize = 1 << 20;
const TAG_LEN: usize = 16;
const FOOTER_LEN: u64 = 4 + 32 + 8;
/// Largest header or manifest accepted.
const MAX_JSON: u32 = 16 * 1024 * 1024;

/// The plaintext header: what a reader needs to find the keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Header {
    pub(crate) format: u32,
    /// Random archive id (hex), salt of the archive's keys.
    pub(crate) backup_id: String,
    /// The key provider that made it (`local`, `transit`).
    pub(crate) provider: String,
    /// Public fingerprint of the root secret the keys derive from.
    pub(crate) root_fingerprint: String,
    /// With transit: the root secret wrapped by transit (never plaintext).
    pub(crate) transit_root: Option<RootRecord>,
}

/// Keys of one archive, derived from the root secret and the archive id.
pub(crate) struct ArchiveKeys {
    cipher: Aes256Gcm,
    mac: Key,
    id: [u8; 16],
}

impl std::fmt::Debug for ArchiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArchiveKeys([REDACTED])")
    }
}

impl ArchiveKeys {
    pub(crate) fn derive(root: &Key, id: [u8; 16]) -> Result<ArchiveKeys> {
        let enc = schedule::derive_bytes(root, SubKey::BackupEncryption(&id))?;
        Ok(ArchiveKeys {
            cipher: Aes256Gcm::new_from_slice(enc.as_slice())
                .map_err(|_| Error::internal("backup key"))?,
            mac: schedule::derive(root, SubKey::BackupManifestMac(&id))?,
            id,
        })
    }

    fn aad(&self, index: u64, last: bool) -> Vec<u8> {
        let mut aad = b"clarity/v1 backup chunk".to_vec();
        aad.extend_from_slice(&self.id);
        aad.extend_from_slice(&index.to_be_bytes());
        aad.push(u8::from(last));
        aad
    }

    fn nonce(index: u64) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&index.to_be_bytes());
        n
    }

    fn sign(&self, manifest: &[u8]) -> Result<[u8; 32]> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.mac.expose())
            .map_err(|_| Error::internal("manifest key"))?;
        mac.update(manifest);
        Ok(mac.finalize().into_bytes().into())
    }

    fn check(&self, manifest: &[u8], tag: &[u8; 32]) -> Result<()> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.mac.expose())
            .map_err(|_| Error::internal("manifest key"))?;
        mac.update(manifest);
        mac.verify_slice(tag).map_err(|_| {
            Error::invalid(
                "backup archive refused: its manifest signature does not verify (the archive was altered, or made with other keys)",
            )
        })
    }
}

fn altered(what: &str) -> Error {
    Error::invalid(format!(
        "backup archive refused: {what} (the archive was altered, truncated or damaged)"
    ))
}

/// Writes an archive: rows in, encrypted chunks out.
pub(crate) struct ArchiveWriter {
    out: BufWriter<File>,
    path: PathBuf,
    keys: ArchiveKeys,
    plain: Zeroizing<Vec<u8>>,
    chunks: u64,
    ciphertext: Sha256,
    header_sha256: String,
    tables: Vec<TableSummary>,
    current: Option<(Sha256, u64)>,
    row_buf: Zeroizing<Vec<u8>>,
    /// What the rows written need, read off them as they pass (S-BAK-2).
    needs: KekNeeds,
}

impl std::fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ArchiveWriter {
    /// Creates `path` (never over an existing file; mode 0600) and writes the header.
    pub(crate) fn create(path: &Path, header: &Header, keys: ArchiveKeys) -> Result<ArchiveWriter> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| {
                Error::invalid(format!("cannot create the archive {}: {e}", path.display()))
            })?;
        let mut out = BufWriter::with_capacity(CHUNK + 64, file);
        let json = serde_json::to_vec(header).map_err(|_| Error::internal("encoding"))?;
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&(json.len() as u32).to_be_bytes());
        head.extend_from_slice(&json);
        out.write_all(&head).map_err(io_error)?;
        Ok(ArchiveWriter {
            out,
            path: path.to_path_buf(),
            keys,
            plain: Zeroizing::new(Vec::with_capacity(CHUNK * 2)),
            chunks: 0,
            ciphertext: Sha256::new(),
            header_sha256: hex::encode(Sha256::digest(&head)),
            tables: Vec::new(),
            current: None,
            row_buf: Zeroizing::new(Vec::with_capacity(4096)),
            needs: KekNeeds::default(),
        })
    }

    pub(crate) fn begin_table(&mut self, table: &Table) -> Result<()> {
        schema::encode_table_start(table, &mut *self.plain).map_err(io_error)?;
        self.tables.push(TableSummary {
            name: table.name.to_string(),
            rows: 0,
            sha256: String::new(),
        });
        self.current = Some((Sha256::new(), 0));
        Ok(())
    }

    pub(crate) fn row(&mut self, table: &Table, row: &[Value]) -> Result<()> {
        self.needs.note(table, row)?;
        self.row_buf.clear();
        schema::encode_row(table, row, &mut self.row_buf)?;
        let (hash, rows) = self
            .current
            .as_mut()
            .ok_or_else(|| Error::internal("row outside a table"))?;
        hash.update(self.row_buf.as_slice());
        *rows += 1;
        self.plain.extend_from_slice(&self.row_buf);
        if self.plain.len() >= CHUNK {
            self.flush_chunks(false)?;
        }
        Ok(())
    }

    pub(crate) fn end_table(&mut self) -> Result<()> {
        let (hash, rows) = self
            .current
            .take()
            .ok_or_else(|| Error::internal("no table to end"))?;
        self.plain.push(schema::TABLE_END);
        if let Some(summary) = self.tables.last_mut() {
            summary.rows = rows;
            summary.sha256 = hex::encode(hash.finalize());
        }
        Ok(())
    }

    fn flush_chunks(&mut self, last: bool) -> Result<()> {
        while self.plain.len() >= CHUNK || (last && !self.plain.is_empty()) {
            let take = self.plain.len().min(CHUNK);
            let is_last = last && take == self.plain.len();
            self.write_chunk(take, is_last)?;
        }
        if last && self.chunks == 0 {
            self.write_chunk(0, true)?;
        }
        Ok(())
    }

    fn write_chunk(&mut self, take: usize, last: bool) -> Result<()> {
        let aad = self.keys.aad(self.chunks, last);
        let nonce = ArchiveKeys::nonce(self.chunks);
        let ct = self
            .keys
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &self.plain[..take],
                    aad: &aad,
                },
            )
            .map_err(|_| Error::internal("archive encryption failed"))?;
        let mut frame = Vec::with_capacity(5);
        frame.push(u8::from(last));
        frame.extend_from_slice(&(ct.len() as u32).to_be_bytes());
        self.ciphertext.update(&frame);
        self.ciphertext.update(&ct);
        self.out.write_all(&frame).map_err(io_error)?;
        self.out.write_all(&ct).map_err(io_error)?;
        // Wipe the plaintext that left, keep the rest.
        let rest = self.plain[take..].to_vec();
        self.plain.clear();
        self.plain.extend_from_slice(&rest);
        self.chunks += 1;
        Ok(())
    }

    /// The KEK versions the rows written so far need.
    pub(crate) fn kek_needs(&self) -> &KekNeeds {
        &self.needs
    }

    /// Writes the last chunk and the signed manifest; syncs the file.
    pub(crate) fn finish(mut self, mut manifest: Manifest) -> Result<Manifest> {
        self.flush_chunks(true)?;
        manifest.tables = std::mem::take(&mut self.tables);
        manifest.chunks = self.chunks;
        manifest.ciphertext_sha256 = hex::encode(self.ciphertext.clone().finalize());
        manifest.header_sha256 = self.header_sha256.clone();
        let json = serde_json::to_vec(&manifest).map_err(|_| Error::internal("encoding"))?;
        let tag = self.keys.sign(&json)?;
        self.out.write_all(&json).map_err(io_error)?;
        self.out
            .write_all(&(json.len() as u32).to_be_bytes())
            .map_err(io_error)?;
        self.out.write_all(&tag).map_err(io_error)?;
        self.out.write_all(END_MAGIC).map_err(io_error)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_error(e.into_error()))?;
        file.sync_all().map_err(io_error)?;
        Ok(manifest)
    }
}

/// Reads an archive: header and footer first, then the decrypted stream.
pub(crate) struct ArchiveReader {
    input: BufReader<File>,
    header: Header,
    header_sha256: String,
    manifest_json: Vec<u8>,
    tag: [u8; 32],
    data_end: u64,
    keys: Option<ArchiveKeys>,
    plain: Zeroizing<Vec<u8>>,
    pos: usize,
    chunks: u64,
    last_seen: bool,
    ciphertext: Sha256,
    read: u64,
}

impl std::fmt::Debug for ArchiveReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("backup_id", &self.header.backup_id)
            .finish_non_exhaustive()
    }
}

impl ArchiveReader {
    /// Opens `path` and reads its header and footer (nothing is trusted yet).
    pub(crate) fn open(path: &Path) -> Result<ArchiveReader> {
        let file = File::open(path).map_err(|e| {
            Error::invalid(format!("cannot open the archive {}: {e}", path.display()))
        })?;
        let len = file.metadata().map_err(io_error)?.len();
        let mut input = BufReader::with_capacity(CHUNK + 64, file);
        let not_archive = || {
            Error::invalid(format!(
                "{} is not a Clarity backup archive",
                path.display()
            ))
        };
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic).map_err(|_| not_archive())?;
        if &magic != MAGIC {
            return Err(not_archive());
        }
        let header_len = read_u32(&mut input).map_err(|_| not_archive())?;
        if header_len > MAX_JSON {
            return Err(not_archive());
        }
        let mut header_json = vec![0u8; header_len as usize];
        input
            .read_exact(&mut header_json)
            .map_err(|_| not_archive())?;
        let header: Header = serde_json::from_slice(&header_json)
            .map_err(|_| altered("its header is not readable"))?;
        if header.format != 1 {
            return Err(Error::invalid(format!(
                "backup archive format {} is not supported by this version",
                header.format
            )));
        }
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&header_len.to_be_bytes());
        head.extend_from_slice(&header_json);
        let data_start = head.len() as u64;
        // The footer.
        if len < data_start + FOOTER_LEN {
            return Err(altered("it is too short"));
        }
        input
            .seek(SeekFrom::Start(len - FOOTER_LEN))
            .map_err(io_error)?;
        let manifest_len = read_u32(&mut input).map_err(io_error)?;
        let mut tag = [0u8; 32];
        input.read_exact(&mut tag).map_err(io_error)?;
        let mut end = [0u8; 8];
        input.read_exact(&mut end).map_err(io_error)?;
        if &end != END_MAGIC || manifest_len > MAX_JSON {
            return Err(altered("its end marker is missing"));
        }
        let data_end = (len - FOOTER_LEN)
            .checked_sub(u64::from(manifest_len))
            .filter(|end| *end >= data_start)
            .ok_or_else(|| altered("its manifest is out of place"))?;
        input.seek(SeekFrom::Start(data_end)).map_err(io_error)?;
        let mut manifest_json = vec![0u8; manifest_len as usize];
        input.read_exact(&mut manifest_json).map_err(io_error)?;
        input.seek(SeekFrom::Start(data_start)).map_err(io_error)?;
        Ok(ArchiveReader {
            input,
            header,
            header_sha256: hex::encode(Sha256::digest(&head)),
            manifest_json,
            tag,
            data_end,
            keys: None,
            plain: Zeroizing::new(Vec::new()),
            pos: 0,
            chunks: 0,
            last_seen: false,
            ciphertext: Sha256::new(),
            read: data_start,
        })
    }

    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes of the file read so far, and the total, for progress.
    pub(crate) fn progress(&self) -> (u64, u64) {
        (self.read, self.data_end)
    }

    /// Checks the manifest's signature with `keys`; returns the manifest.
    pub(crate) fn verify_manifest(&mut self, keys: ArchiveKeys) -> Result<Manifest> {
        keys.check(&self.manifest_json, &self.tag)?;
        let manifest: Manifest = serde_json::from_slice(&self.manifest_json)
            .map_err(|_| altered("its manifest is not readable"))?;
        if manifest.header_sha256 != self.header_sha256
            || manifest.backup_id != self.header.backup_id
        {
            return Err(altered("its header does not match the signed manifest"));
        }
        self.keys = Some(keys);
        Ok(manifest)
    }

    /// Once the stream is read to its end: the ciphertext's digest and chunk count.
    pub(crate) fn finish(&mut self) -> Result<(String, u64)> {
        if !self.last_seen || self.read != self.data_end {
            return Err(altered("its data ends early or has extra bytes"));
        }
        Ok((hex::encode(self.ciphertext.clone().finalize()), self.chunks))
    }

    fn next_chunk(&mut self) -> Result<bool> {
        if self.last_seen {
            if self.read != self.data_end {
                return Err(altered("data follows its last chunk"));
            }
            return Ok(false);
        }
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| Error::internal("manifest not verified"))?;
        let mut frame = [0u8; 5];
        if self.read + 5 > self.data_end {
            return Err(altered("it ends before its last chunk"));
        }
        self.input.read_exact(&mut frame).map_err(io_error)?;
        let last = match frame[0] {
            0 => false,
            1 => true,
            _ => return Err(altered(&format!("chunk {} is malformed", self.chunks))),
        };
        let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        if !(TAG_LEN..=CHUNK + TAG_LEN).contains(&len) || self.read + 5 + len as u64 > self.data_end
        {
            return Err(altered(&format!(
                "chunk {} has a wrong length",
                self.chunks
            )));
        }
        let mut ct = vec![0u8; len];
        self.input.read_exact(&mut ct).map_err(io_error)?;
        self.read += 5 + len as u64;
        self.ciphertext.update(frame);
        self.ciphertext.update(&ct);
        let aad = keys.aad(self.chunks, last);
        let nonce = ArchiveKeys::nonce(self.chunks);
        let plain = keys
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ct,
                    aad: &aad,
                },
            )
            .map_err(|_| altered(&format!("chunk {} failed authentication", self.chunks)))?;
        self.plain = Zeroizing::new(plain);
        self.pos = 0;
        self.chunks += 1;
        self.last_seen = last;
        Ok(true)
    }
}

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.plain.len() {
            match self.next_chunk() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.plain.len() - self.pos);
        buf[..n].copy_from_slice(&self.plain[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn read_u32(input: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

/// One item of the decrypted stream.
#[derive(Debug)]
pub(crate) enum Item {
    Table(&'static Table),
    Row(Vec<Value>),
    TableEnd,
}

/// Reads the next item; `None` at the end of the stream.
pub(crate) fn next_item(
    reader: &mut ArchiveReader,
    current: Option<&'static Table>,
) -> Result<Option<Item>> {
    let mut marker = [0u8; 1];
    if reader.read(&mut marker).map_err(unwrap_io)? == 0 {
        return Ok(None);
    }
    match (marker[0], current) {
        (schema::TABLE_START, None) => {
            let name = schema::read_bytes(reader)?;
            let name = String::from_utf8(name).map_err(|_| schema::malformed())?;
            Ok(Some(Item::Table(schema::table(&name)?)))
        }
        (schema::ROW, Some(table)) => Ok(Some(Item::Row(schema::decode_row(table, reader)?))),
        (schema::TABLE_END, Some(_)) => Ok(Some(Item::TableEnd)),
        _ => Err(schema::malformed()),
    }
}
