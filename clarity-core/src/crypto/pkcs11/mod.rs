//! [`Pkcs11KeyProvider`]: KEKs held in a PKCS#11 token (an HSM, SoftHSM2).
//! Data keys are encrypted and decrypted inside the token; the KEKs never
//! leave it (S-KEY-4). Unwrapped data keys are cached by the encrypting
//! layer, whatever the provider (see `PhiStore`), not here.
//!
//! Each KEK version is an AES-256 secret-key object in the token
//! (`CKA_TOKEN`, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`), labelled
//! `keys.pkcs11_key_label`, its version in `CKA_ID` (four bytes, big
//! endian). The current version is the highest; rotation generates a new
//! object in the token, retirement destroys the objects below a version.
//!
//! A data key is wrapped with `CKM_AES_GCM` inside the token: a fresh
//! 12-byte IV from the OS CSPRNG, the context (e.g. the patient id) as
//! additional authenticated data, a 128-bit tag. The stored form is text,
//! `pkcs11:v<N>:<base64 of iv || ciphertext || tag>`, so the root secret's
//! record (see [`super::RootRecord`]) holds it as transit's does. A wrapped
//! key moved to another context, or altered, fails like a damaged one
//! ([`Error::Integrity`]).
//!
//! PKCS#11 calls block: they run on tokio's blocking pool, each on a
//! logged-in session taken from a pool of `keys.pkcs11_sessions`, so
//! concurrent wraps do not wait for one another.

mod settings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::{AuthPin, Ulong};
use zeroize::Zeroizing;

pub use settings::Pkcs11Settings;

use super::{HoldsRoot, Key, KeyProvider, SecretString, WrappedKey, split_versioned};
use crate::error::{Error, Result};

/// The prefix of the text form of a wrapped key.
const PREFIX: &str = "pkcs11";
/// AES-GCM IV length.
const IV_LEN: usize = 12;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;

/// KEKs in a PKCS#11 token (see the module documentation).
pub struct Pkcs11KeyProvider {
    token: Arc<Token>,
    root: Option<Key>,
}

impl std::fmt::Debug for Pkcs11KeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11KeyProvider")
            .field("module", &self.token.module)
            .field("token", &self.token.token_label)
            .field("key_label", &self.token.key_label)
            .field("sessions", &self.token.sessions)
            .field("root_loaded", &self.root.is_some())
            .finish_non_exhaustive()
    }
}

/// The token, its PIN and the pool of logged-in sessions.
struct Token {
    ctx: Pkcs11,
    slot: Slot,
    module: PathBuf,
    token_label: String,
    key_label: String,
    pin: SecretString,
    sessions: usize,
    /// Sessions not in use, logged in.
    idle: Mutex<Vec<Session>>,
    /// One permit per session of the pool.
    permits: tokio::sync::Semaphore,
}

/// Every module loaded by this process. A module is initialized once per
/// process (a second `C_Initialize` fails) and never finalized: other
/// providers of the same process may use it.
static MODULES: Mutex<BTreeMap<PathBuf, Pkcs11>> = Mutex::new(BTreeMap::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The module at `path`, loaded and initialized once per process.
pub(crate) fn load_module(path: &Path) -> Result<Pkcs11> {
    let mut modules = lock(&MODULES);
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    if !path.is_file() {
        return Err(Error::key(format!(
            "keys.pkcs11_module {} is not a file: install the token's PKCS#11 library or correct the path",
            path.display()
        )));
    }
    let ctx = Pkcs11::new(path).map_err(|e| {
        Error::key(format!(
            "keys.pkcs11_module {} cannot be loaded as a PKCS#11 module: {e}",
            path.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => {
            return Err(Error::key(format!(
                "keys.pkcs11_module {}: C_Initialize failed: {}",
                path.display(),
                describe(&e)
            )));
        }
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// A PKCS#11 error in words (the return value's name, not its long text).
fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("{function} returned {rv:?}"),
        other => other.to_string(),
    }
}

/// Whether `e` means the token (or the session) stopped answering: worth
/// retrying on a fresh session, and a 503 if it persists.
fn is_outage(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::DeviceError
                | RvError::DeviceRemoved
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::SessionCount
                | RvError::CryptokiNotInitialized
                | RvError::GeneralError
                | RvError::FunctionFailed
                | RvError::UserNotLoggedIn,
            _
        )
    )
}

/// A PKCS#11 failure while doing `what`, as Clarity's error.
fn token_error(what: &str, e: &CkError) -> Error {
    if is_outage(e) {
        Error::Unavailable {
            message: format!("the PKCS#11 token did not answer ({what}: {})", describe(e)),
        }
    } else {
        Error::key(format!("PKCS#11 {what} failed: {}", describe(e)))
    }
}

/// The slot holding the token labelled `label`.
fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| token_error("listing slots", &e))?;
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| token_error("reading token information", &e))?;
        if info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(Error::key(format!(
        "keys.pkcs11_token_label: no token labelled {label:?} in keys.pkcs11_module"
    )))
}

/// The version a KEK object's `CKA_ID` holds.
fn version_of_id(id: &[u8]) -> Option<i32> {
    let bytes: [u8; 4] = id.try_into().ok()?;
    i32::try_from(u32::from_be_bytes(bytes))
        .ok()
        .filter(|v| *v > 0)
}

/// The additional authenticated data binding a wrapped key to its context.
fn aad(context: &[u8]) -> Vec<u8> {
    let mut aad = b"clarity/v1|dek|".to_vec();
    aad.extend_from_slice(context);
    aad
}

impl Token {
    /// A new session, logged in as the user.
    fn open_session(&self) -> std::result::Result<Session, CkError> {
        let session = self.ctx.open_rw_session(self.slot)?;
        let pin = AuthPin::from(self.pin.expose().to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(e),
        }
    }

    /// Opens and logs in a session, with the errors an operator can act on.
    fn first_session(&self) -> Result<Session> {
        self.open_session().map_err(|e| match &e {
            CkError::Pkcs11(
                RvError::PinIncorrect
                | RvError::PinInvalid
                | RvError::PinLenRange
                | RvError::PinExpired
                | RvError::PinLocked,
                _,
            ) => Error::key(format!(
                "keys.pkcs11_pin_file: the token {:?} refused the PIN ({})",
                self.token_label,
                describe(&e)
            )),
            _ => token_error("logging in", &e),
        })
    }

    /// Runs `op` on a logged-in session of the pool, on the blocking pool.
    /// A session the token lost is dropped and the operation tried once more
    /// on a fresh one.
    async fn run<T, F>(self: &Arc<Self>, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Token, &Session) -> std::result::Result<T, Failure> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Unavailable {
                message: "the PKCS#11 provider is shutting down".into(),
            })?;
        let token = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut fresh = false;
            loop {
                let pooled = lock(&token.idle).pop();
                let session = match pooled {
                    Some(session) => session,
                    None => {
                        fresh = true;
                        token.first_session()?
                    }
                };
                match op(&token, &session) {
                    Ok(value) => {
                        lock(&token.idle).push(session);
                        return Ok(value);
                    }
                    Err(Failure::Token(what, e)) if is_outage(&e) => {
                        // The others are likely lost as well.
                        drop(session);
                        lock(&token.idle).clear();
                        if fresh {
                            return Err(token_error(what, &e));
                        }
                        fresh = true;
                    }
                    Err(failure) => {
                        lock(&token.idle).push(session);
                        return Err(failure.into());
                    }
                }
            }
        })
        .await
        .map_err(|_| Error::internal("a PKCS#11 call panicked"))?
    }

    /// Every KEK object of ours, with its version.
    fn keks(&self, session: &Session) -> std::result::Result<Vec<(i32, ObjectHandle)>, Failure> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(self.key_label.as_bytes().to_vec()),
        ];
        let handles = session
            .find_objects(&template)
            .map_err(|e| Failure::Token("searching the KEKs", e))?;
        let mut keks = Vec::with_capacity(handles.len());
        for handle in handles {
            let attributes = session
                .get_attributes(handle, &[AttributeType::Id])
                .map_err(|e| Failure::Token("reading a KEK's id", e))?;
            for attribute in attributes {
                if let Attribute::Id(id) = attribute
                    && let Some(version) = version_of_id(&id)
                {
                    keks.push((version, handle));
                }
            }
        }
        keks.sort_by_key(|(version, _)| *version);
        Ok(keks)
    }

    /// The current KEK: the highest version.
    fn current(&self, session: &Session) -> std::result::Result<(i32, ObjectHandle), Failure> {
        self.keks(session)?.last().copied().ok_or_else(|| {
            Failure::Clarity(Error::key(format!(
                "no KEK labelled {:?} in the PKCS#11 token {:?}",
                self.key_label, self.token_label
            )))
        })
    }

    /// Generates KEK `version` inside the token.
    fn generate(&self, session: &Session, version: i32) -> std::result::Result<(), Failure> {
        let id = u32::try_from(version)
            .map_err(|_| Failure::Clarity(Error::internal("negative KEK version")))?
            .to_be_bytes()
            .to_vec();
        let template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::ValueLen(Ulong::from(32)),
            Attribute::Label(self.key_label.as_bytes().to_vec()),
            Attribute::Id(id),
        ];
        session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map(drop)
            .map_err(|e| Failure::Token("generating a KEK", e))
    }
}

/// What went wrong inside a session: a PKCS#11 error (classified once the
/// session's fate is decided) or one of ours.
enum Failure {
    Token(&'static str, CkError),
    Clarity(Error),
}

impl From<Failure> for Error {
    fn from(failure: Failure) -> Error {
        match failure {
            Failure::Token(what, e) => token_error(what, &e),
            Failure::Clarity(e) => e,
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Clarity(e)
    }
}

impl Pkcs11KeyProvider {
    /// Loads the module, finds the token, reads the PIN file (under the
    /// secret-file rule) and logs in; generates KEK version 1 when the
    /// token holds none yet. The provider has no root secret until
    /// [`super::with_root`].
    ///
    /// # Errors
    /// [`Error::Key`] naming the setting when the module, the token or the
    /// PIN is wrong (never the PIN itself); [`Error::Unavailable`] when the
    /// token does not answer.
    pub async fn connect(settings: Pkcs11Settings) -> Result<Pkcs11KeyProvider> {
        let token = tokio::task::spawn_blocking(move || -> Result<Token> {
            let pin = super::read_token_file("keys.pkcs11_pin_file", &settings.pin_file)?;
            let ctx = load_module(&settings.module)?;
            let slot = find_slot(&ctx, &settings.token_label)?;
            let sessions = settings.sessions.max(1);
            let token = Token {
                ctx,
                slot,
                module: settings.module,
                token_label: settings.token_label,
                key_label: settings.key_label,
                pin,
                sessions,
                idle: Mutex::new(Vec::with_capacity(sessions)),
                permits: tokio::sync::Semaphore::new(sessions),
            };
            let session = token.first_session()?;
            if token.keks(&session)?.is_empty() {
                token.generate(&session, 1)?;
                tracing::warn!(
                    token = token.token_label,
                    label = token.key_label,
                    "created KEK version 1 in the PKCS#11 token"
                );
            }
            lock(&token.idle).push(session);
            Ok(token)
        })
        .await
        .map_err(|_| Error::internal("a PKCS#11 call panicked"))??;
        Ok(Pkcs11KeyProvider {
            token: Arc::new(token),
            root: None,
        })
    }
}

impl HoldsRoot for Pkcs11KeyProvider {
    fn set_root(&mut self, root: Key) {
        self.root = Some(root);
    }
}

#[async_trait]
impl KeyProvider for Pkcs11KeyProvider {
    fn name(&self) -> &'static str {
        "pkcs11"
    }

    async fn current_kek_version(&self) -> Result<i32> {
        self.token
            .run(|token, session| Ok(token.current(session)?.0))
            .await
    }

    async fn kek_versions(&self) -> Result<Vec<i32>> {
        self.token
            .run(|token, session| {
                let mut versions: Vec<i32> = token.keks(session)?.iter().map(|k| k.0).collect();
                versions.dedup();
                Ok(versions)
            })
            .await
    }

    async fn rotate(&self) -> Result<i32> {
        self.token
            .run(|token, session| {
                let next = token.keks(session)?.last().map_or(1, |k| k.0 + 1);
                token.generate(session, next)?;
                Ok(next)
            })
            .await
    }

    async fn wrap(&self, key: &Key, context: &[u8]) -> Result<WrappedKey> {
        let key = key.clone();
        let aad = aad(context);
        let (version, sealed) = self
            .token
            .run(move |token, session| {
                let (version, kek) = token.current(session)?;
                let mut iv = [0u8; IV_LEN];
                super::fill_random(&mut iv)?;
                let mut sealed = iv.to_vec();
                let params = GcmParams::new(&mut iv, &aad, Ulong::from(TAG_LEN as u64 * 8))
                    .map_err(|e| Failure::Token("preparing AES-GCM", e))?;
                let ct = session
                    .encrypt(&Mechanism::AesGcm(params), kek, key.expose())
                    .map_err(|e| Failure::Token("wrapping a data key", e))?;
                sealed.extend_from_slice(&ct);
                Ok((version, sealed))
            })
            .await?;
        Ok(WrappedKey {
            kek_version: version,
            ciphertext: format!("{PREFIX}:v{version}:{}", B64.encode(sealed)).into_bytes(),
        })
    }

    async fn unwrap(&self, wrapped: &WrappedKey, context: &[u8]) -> Result<Key> {
        let text = std::str::from_utf8(&wrapped.ciphertext).map_err(|_| Error::Integrity)?;
        let (version, body) = split_versioned(PREFIX, text)?;
        if version != wrapped.kek_version {
            return Err(Error::Integrity);
        }
        let sealed = B64.decode(body).map_err(|_| Error::Integrity)?;
        if sealed.len() != IV_LEN + Key::LEN + TAG_LEN {
            return Err(Error::Integrity);
        }
        let aad = aad(context);
        self.token
            .run(move |token, session| {
                let keks: Vec<ObjectHandle> = token
                    .keks(session)?
                    .into_iter()
                    .filter(|k| k.0 == version)
                    .map(|k| k.1)
                    .collect();
                if keks.is_empty() {
                    return Err(Failure::Clarity(Error::key(format!(
                        "KEK version {version} is not in the PKCS#11 token (retired?)"
                    ))));
                }
                // Two instances creating the same version at once leave two
                // objects: the tag tells which one wrapped this key.
                for kek in keks {
                    let mut iv = [0u8; IV_LEN];
                    iv.copy_from_slice(&sealed[..IV_LEN]);
                    let params = GcmParams::new(&mut iv, &aad, Ulong::from(TAG_LEN as u64 * 8))
                        .map_err(|e| Failure::Token("preparing AES-GCM", e))?;
                    match session.decrypt(&Mechanism::AesGcm(params), kek, &sealed[IV_LEN..]) {
                        Ok(plain) => {
                            let plain = Zeroizing::new(plain);
                            return Ok(Key::from_slice(&plain).map_err(|_| Error::Integrity)?);
                        }
                        // A failed tag check is CKR_ENCRYPTED_DATA_INVALID
                        // for most tokens, CKR_GENERAL_ERROR for SoftHSM2.
                        Err(e)
                            if is_outage(&e)
                                && !matches!(
                                    e,
                                    CkError::Pkcs11(
                                        RvError::GeneralError | RvError::FunctionFailed,
                                        _
                                    )
                                ) =>
                        {
                            return Err(Failure::Token("unwrapping a data key", e));
                        }
                        Err(_) => {}
                    }
                }
                Err(Failure::Clarity(Error::Integrity))
            })
            .await
    }

    async fn retire_below(&self, version: i32) -> Result<()> {
        self.token
            .run(move |token, session| {
                let keks = token.keks(session)?;
                let current = keks.last().map_or(0, |k| k.0);
                if version > current {
                    return Err(Failure::Clarity(Error::invalid(
                        "cannot retire the current KEK version",
                    )));
                }
                for (_, kek) in keks.into_iter().filter(|k| k.0 < version) {
                    session
                        .destroy_object(kek)
                        .map_err(|e| Failure::Token("destroying a retired KEK", e))?;
                }
                Ok(())
            })
            .await
    }

    async fn root_key(&self) -> Result<Key> {
        self.root
            .clone()
            .ok_or_else(|| Error::key("the pkcs11 provider has no root secret loaded"))
    }

    async fn check(&self) -> Result<()> {
        self.token
            .run(|token, session| token.current(session).map(drop))
            .await
    }
}

/// Initializes a new token labelled `label` in the first free slot of the
/// module at `module` (SoftHSM2 always has one), with user PIN `pin`: for
/// tests, each of which gets a token of its own.
///
/// # Errors
/// [`Error::Key`] when the module has no free slot or refuses.
#[cfg(feature = "testing")]
pub fn create_token(module: &Path, label: &str, pin: &str) -> Result<()> {
    // One at a time: two tests must not take the same free slot.
    static CREATING: Mutex<()> = Mutex::new(());
    let _one = lock(&CREATING);
    let ctx = load_module(module)?;
    let failed = |e: CkError| Error::key(format!("creating a test token: {}", describe(&e)));
    let free = ctx
        .get_all_slots()
        .map_err(failed)?
        .into_iter()
        .find(|slot| {
            ctx.get_token_info(*slot)
                .is_ok_and(|info| !info.token_initialized())
        })
        .ok_or_else(|| Error::key("the PKCS#11 module has no free slot"))?;
    let so_pin = AuthPin::from(format!("so-{pin}"));
    ctx.init_token(free, &so_pin, label).map_err(failed)?;
    let session = ctx
        .open_rw_session(find_slot(&ctx, label)?)
        .map_err(failed)?;
    session.login(UserType::So, Some(&so_pin)).map_err(failed)?;
    session
        .init_pin(&AuthPin::from(pin.to_owned()))
        .map_err(failed)?;
    session.logout().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_ids() {
        assert_eq!(version_of_id(&[0, 0, 0, 3]), Some(3));
        for bad in [
            &[0u8, 0, 0, 0][..],
            &[0, 0, 3],
            &[0x80, 0, 0, 0],
            b"clarity-kek",
        ] {
            assert_eq!(version_of_id(bad), None, "{bad:?}");
        }
    }
}
