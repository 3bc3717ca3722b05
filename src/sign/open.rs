//! Opening the signer the options name, once for `build` and `load`: a key
//! file (with its passphrase file) or a GnuPG key. Opened before any work, so
//! that a wrong passphrase or a missing key fails first.

use std::path::{Path, PathBuf};

use super::{keys, GpgOptions, GpgSigner, ImageSigner, SignError};

#[derive(Debug, thiserror::Error)]
pub enum OpenSignerError {
    #[error("reading --passphrase-file")]
    Passphrase(#[source] SignError),
    #[error("loading the signing key {}", path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: SignError,
    },
    #[error("finding the GnuPG key {id:?} (--sign-by)")]
    Gpg {
        id: String,
        #[source]
        source: SignError,
    },
    #[error("no signing key: give --sign-key FILE (see `u7s-bundle keygen`) or --sign-by ID (a GnuPG key of this user)")]
    NoKey,
}

/// The key in `path`, unlocked with the passphrase in `passphrase_file`.
pub fn open_key_file(
    path: &Path,
    passphrase_file: Option<&Path>,
) -> Result<keys::SigningKey, OpenSignerError> {
    let pass = passphrase_file
        .map(keys::passphrase_from_file)
        .transpose()
        .map_err(OpenSignerError::Passphrase)?;
    keys::SigningKey::from_file(path, pass.as_deref()).map_err(|source| OpenSignerError::Key {
        path: path.to_path_buf(),
        source,
    })
}

/// The image signer: the key file when given, else the GnuPG key `gpg_id`.
pub fn open_signer(
    key_file: Option<&Path>,
    gpg_id: Option<&str>,
    passphrase_file: Option<&Path>,
) -> Result<Box<dyn ImageSigner>, OpenSignerError> {
    match (key_file, gpg_id) {
        (Some(path), _) => Ok(Box::new(open_key_file(path, passphrase_file)?)),
        (None, Some(id)) => {
            let options = GpgOptions {
                passphrase_file: passphrase_file.map(Path::to_path_buf),
                tty: super::gpg::stdin_tty(),
                ..Default::default()
            };
            let signer =
                GpgSigner::with_options(id, options).map_err(|source| OpenSignerError::Gpg {
                    id: id.to_string(),
                    source,
                })?;
            Ok(Box::new(signer))
        }
        (None, None) => Err(OpenSignerError::NoKey),
    }
}
