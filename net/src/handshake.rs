//! The authenticated handshake, as a sans-IO state machine.
//!
//! Both sides send [`Hello`] at once (version, chain id, node key, a fresh
//! 32-byte challenge, listen port). On receiving the other's hello each side
//! checks version, chain and self-connection, then sends [`Message::Auth`]: an
//! ed25519 signature over
//!
//! ```text
//! blake3::derive_key("strata-net handshake v1",
//!     initiator_hello(100 bytes) || responder_hello(100 bytes)) || role(u8)
//! ```
//!
//! where `role` is 0 when the initiator (the dialing side) signs and 1 when
//! the responder signs. Both fresh challenges, the version and the chain id
//! are in the hellos, so a signature cannot be replayed on another connection
//! or reflected back to its author. Duplicate connections are detected by the
//! caller, which knows the peer table (see [`HandshakeRefusal::Duplicate`]).
//!
//! [`Message::Auth`]: crate::message::Message::Auth

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::error::{Error, HandshakeRefusal, Result};
use crate::message::{Hello, AUTH_BYTES};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// Versions accepted from peers.
pub const SUPPORTED_VERSIONS: &[u16] = &[PROTOCOL_VERSION];

const TRANSCRIPT_CONTEXT: &str = "strata-net handshake v1";

/// A node's long-lived ed25519 identity.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", hex(&self.public()))
    }
}

/// Short lower-case hex of the first 4 bytes, for logs and errors.
pub fn hex(key: &[u8; 32]) -> String {
    key[..4].iter().map(|b| format!("{b:02x}")).collect()
}

impl Identity {
    /// An identity from a 32-byte secret seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Identity {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh random identity (OS randomness).
    pub fn generate() -> Result<Self> {
        Ok(Identity::from_seed(random_bytes()?))
    }

    /// The public node key.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

/// 32 bytes of OS randomness.
pub fn random_bytes() -> Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(b)
}

/// Which side of the connection we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We dialed.
    Initiator,
    /// We accepted.
    Responder,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::Initiator => 0,
            Role::Responder => 1,
        }
    }
    fn other(self) -> Role {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }
}

/// What a completed handshake established about the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's proven node key.
    pub node_key: [u8; 32],
    /// The port the peer listens on (0 = none).
    pub listen_port: u16,
    /// The version it speaks.
    pub version: u16,
}

/// One handshake in progress.
#[derive(Debug)]
pub struct Handshake {
    role: Role,
    ours: Hello,
    theirs: Option<Hello>,
    deadline_ms: u64,
}

impl Handshake {
    /// Starts a handshake; send [`Handshake::hello`] at once.
    pub fn new(
        identity: &Identity,
        chain_id: [u8; 32],
        role: Role,
        listen_port: u16,
        challenge: [u8; 32],
        now_ms: u64,
        timeout_ms: u64,
    ) -> Self {
        Handshake {
            role,
            ours: Hello {
                version: PROTOCOL_VERSION,
                chain_id,
                node_key: identity.public(),
                challenge,
                listen_port,
            },
            theirs: None,
            deadline_ms: now_ms.saturating_add(timeout_ms),
        }
    }

    /// Our hello.
    pub fn hello(&self) -> Hello {
        self.ours
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer's hello, once received.
    pub fn peer_hello(&self) -> Option<&Hello> {
        self.theirs.as_ref()
    }

    /// Errors with [`HandshakeRefusal::Timeout`] once the deadline passed.
    pub fn check_timeout(&self, now_ms: u64) -> Result<(), HandshakeRefusal> {
        if now_ms >= self.deadline_ms {
            Err(HandshakeRefusal::Timeout)
        } else {
            Ok(())
        }
    }

    /// Handles the peer's hello; returns our `Auth` signature to send.
    pub fn on_hello(
        &mut self,
        identity: &Identity,
        theirs: Hello,
    ) -> Result<[u8; AUTH_BYTES], HandshakeRefusal> {
        if self.theirs.is_some() {
            return Err(HandshakeRefusal::UnexpectedMessage("second hello"));
        }
        if !SUPPORTED_VERSIONS.contains(&theirs.version) {
            return Err(HandshakeRefusal::UnsupportedVersion(theirs.version));
        }
        if theirs.chain_id != self.ours.chain_id {
            return Err(HandshakeRefusal::WrongChain);
        }
        if theirs.node_key == self.ours.node_key || theirs.challenge == self.ours.challenge {
            return Err(HandshakeRefusal::SelfConnection);
        }
        VerifyingKey::from_bytes(&theirs.node_key).map_err(|_| HandshakeRefusal::BadKey)?;
        self.theirs = Some(theirs);
        Ok(identity.sign(&self.transcript(self.role)))
    }

    /// Handles the peer's `Auth`; on success the peer is authenticated.
    pub fn on_auth(&self, signature: &[u8; AUTH_BYTES]) -> Result<PeerInfo, HandshakeRefusal> {
        let theirs = self
            .theirs
            .ok_or(HandshakeRefusal::UnexpectedMessage("auth before hello"))?;
        let key =
            VerifyingKey::from_bytes(&theirs.node_key).map_err(|_| HandshakeRefusal::BadKey)?;
        let sig = Signature::from_bytes(signature);
        key.verify(&self.transcript(self.role.other()), &sig)
            .map_err(|_| HandshakeRefusal::BadSignature)?;
        Ok(PeerInfo {
            node_key: theirs.node_key,
            listen_port: theirs.listen_port,
            version: theirs.version,
        })
    }

    fn transcript(&self, signer: Role) -> [u8; 33] {
        let theirs = self.theirs.expect("transcript needs the peer's hello");
        let (init, resp) = match self.role {
            Role::Initiator => (self.ours, theirs),
            Role::Responder => (theirs, self.ours),
        };
        let mut h = blake3::Hasher::new_derive_key(TRANSCRIPT_CONTEXT);
        h.update(&init.encode());
        h.update(&resp.encode());
        let mut out = [0u8; 33];
        out[..32].copy_from_slice(h.finalize().as_bytes());
        out[32] = signer.byte();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIN: [u8; 32] = [7; 32];

    fn pair() -> (Identity, Identity, Handshake, Handshake) {
        let a = Identity::from_seed([1; 32]);
        let b = Identity::from_seed([2; 32]);
        let ha = Handshake::new(&a, CHAIN, Role::Initiator, 9000, [10; 32], 0, 1000);
        let hb = Handshake::new(&b, CHAIN, Role::Responder, 9001, [11; 32], 0, 1000);
        (a, b, ha, hb)
    }

    #[test]
    fn mutual_proof_succeeds() {
        let (a, b, mut ha, mut hb) = pair();
        let sig_a = ha.on_hello(&a, hb.hello()).unwrap();
        let sig_b = hb.on_hello(&b, ha.hello()).unwrap();
        let pb = ha.on_auth(&sig_b).unwrap();
        let pa = hb.on_auth(&sig_a).unwrap();
        assert_eq!(pb.node_key, b.public());
        assert_eq!(pb.listen_port, 9001);
        assert_eq!(pa.node_key, a.public());
    }

    #[test]
    fn bad_signature_refused() {
        let (a, b, mut ha, mut hb) = pair();
        let mut sig_a = ha.on_hello(&a, hb.hello()).unwrap();
        hb.on_hello(&b, ha.hello()).unwrap();
        sig_a[5] ^= 1;
        assert_eq!(hb.on_auth(&sig_a), Err(HandshakeRefusal::BadSignature));
    }

    #[test]
    fn reflected_signature_refused() {
        // The responder's own signature sent back to it must not verify.
        let (a, b, mut ha, mut hb) = pair();
        ha.on_hello(&a, hb.hello()).unwrap();
        let sig_b = hb.on_hello(&b, ha.hello()).unwrap();
        assert_eq!(hb.on_auth(&sig_b), Err(HandshakeRefusal::BadSignature));
    }

    #[test]
    fn signature_from_another_session_refused() {
        let (a, b, mut ha, mut hb) = pair();
        let sig_a = ha.on_hello(&a, hb.hello()).unwrap();
        // A new session with a fresh responder challenge.
        let mut hb2 = Handshake::new(&b, CHAIN, Role::Responder, 9001, [12; 32], 0, 1000);
        hb2.on_hello(&b, ha.hello()).unwrap();
        assert_eq!(hb2.on_auth(&sig_a), Err(HandshakeRefusal::BadSignature));
        hb.on_hello(&b, ha.hello()).unwrap();
        assert!(hb.on_auth(&sig_a).is_ok());
    }

    #[test]
    fn refusals() {
        let (a, b, mut ha, hb) = pair();
        let mut other = hb.hello();
        other.chain_id = [0; 32];
        assert_eq!(ha.on_hello(&a, other), Err(HandshakeRefusal::WrongChain));
        let mut other = hb.hello();
        other.version = 99;
        assert_eq!(
            ha.on_hello(&a, other),
            Err(HandshakeRefusal::UnsupportedVersion(99))
        );
        let me = ha.hello();
        assert_eq!(ha.on_hello(&a, me), Err(HandshakeRefusal::SelfConnection));
        assert_eq!(
            ha.on_auth(&[0; 64]),
            Err(HandshakeRefusal::UnexpectedMessage("auth before hello"))
        );
        ha.on_hello(&a, hb.hello()).unwrap();
        assert!(matches!(
            ha.on_hello(&a, hb.hello()),
            Err(HandshakeRefusal::UnexpectedMessage(_))
        ));
        assert_eq!(ha.check_timeout(999), Ok(()));
        assert_eq!(ha.check_timeout(1000), Err(HandshakeRefusal::Timeout));
        let _ = b;
    }
}
