//! u7s-bundle: carry a rootless-Kubernetes image set (ALT podsec-k8s, "u7s") from a
//! connected host to isolated ones as one signed archive, and load it there into
//! `registry.local` with the OpenPGP simple signatures and trust files CRI-O checks.
//!
//! The library holds every concept as a module; `src/commands/` (in the binary)
//! turns arguments into calls of them and reports. Data flows one way, a
//! module for each stage:
//!
//! - ① [`profile`]: profiles, versions, validation;
//! - ② [`plan`]: the image set to pull;
//! - ③ [`registry`] (client verbs), [`pull`], [`cache`];
//! - ④ [`bundle`] writer → archive, or [`delta`] against a base;
//! - ⑤ [`bundle::reader`] hands verified entries to a `BundleSink`;
//!   [`bundle::verify`] checks signature and layout (`verify`);
//! - ⑥ [`load`]: the sink that checks the header and hands blobs to
//!   [`push`] as they are read; then manifests, signatures ([`sign`]), tags;
//! - ⑦ [`trust`]: policy, registries.d, lookaside, keys, and
//!   [`trust::install`] that writes them;
//! - ⑧ [`kubeadm`], [`services`], [`hosts`]: the cluster on top.
//!
//! Failures say their [`error::Class`], which the binary maps to exit codes.

pub mod bundle;
pub mod cache;
pub mod delta;
pub mod digest;
pub mod edits;
pub mod error;
pub mod freshness;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod hosts;
pub mod interrupt;
pub mod kubeadm;
pub mod load;
pub mod lock;
pub mod node_state;
pub mod oci;
pub mod plan;
pub mod platform;
pub mod podsec_env;
pub mod policy_eval;
pub mod profile;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod services;
pub mod sign;
pub mod trust;
