//! The decoders' fuzz targets in miniature, run by the normal `cargo test`:
//! random bytes and random mutations of valid encodings must decode to an
//! error or to something that re-encodes to exactly the input — never a
//! panic. The full fuzzers: `cd consensus/fuzz && cargo +nightly fuzz run tx_decode`
//! (also `block_decode`, `wire_decode`).

use proptest::prelude::*;
use strata_consensus::block::Block;
use strata_consensus::engine::Message;
use strata_consensus::tx::{signing_key_from_seed, Transaction, TxBody, TxKind};
use strata_consensus::wire::Payload;

fn valid_tx() -> Vec<u8> {
    let k = signing_key_from_seed(&[5; 32]);
    TxBody {
        chain_id: 3,
        sender: k.verifying_key().to_bytes(),
        nonce: 9,
        fee: 2,
        kind: TxKind::Put {
            key: b"name".to_vec(),
            value: b"strata".to_vec(),
        },
    }
    .sign(&k)
    .unwrap()
    .encoded()
    .to_vec()
}

fn valid_block() -> Vec<u8> {
    let ids = (0u8..5).map(|i| [i; 32]).collect();
    Block::new(1, [0; 32], [1; 32], [2; 32], 3, ids)
        .unwrap()
        .encode()
}

fn valid_payload() -> Vec<u8> {
    let tx = Transaction::decode(&valid_tx()).unwrap();
    let block = Block::new(1, [0; 32], [1; 32], [2; 32], 3, vec![*tx.id()]).unwrap();
    Payload::Engine(Message::BlockData {
        block: Box::new(block),
        txs: vec![std::sync::Arc::new(tx)],
    })
    .encode()
}

fn check_payload(bytes: &[u8]) {
    if let Ok(p) = Payload::decode(bytes) {
        assert_eq!(p.encode(), bytes);
    }
}

fn check_tx(bytes: &[u8]) {
    if let Ok(tx) = Transaction::decode(bytes) {
        assert_eq!(tx.encoded(), bytes);
    }
}

fn check_block(bytes: &[u8]) {
    if let Ok(b) = Block::decode(bytes) {
        assert_eq!(b.encode(), bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
        check_tx(&bytes);
        check_block(&bytes);
        check_payload(&bytes);
    }

    #[test]
    fn mutated_encodings_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        for base in [valid_tx(), valid_block(), valid_payload()] {
            let mut bytes = base.clone();
            for (at, x) in &flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            let cut = cut % (bytes.len() + 1);
            check_tx(&bytes[..cut]);
            check_block(&bytes[..cut]);
            check_tx(&bytes);
            check_block(&bytes);
            check_payload(&bytes[..cut]);
            check_payload(&bytes);
        }
    }
}
