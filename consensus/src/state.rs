//! The chain state as 32-byte hashed keys, and deterministic block execution
//! producing a sorted state diff.
//!
//! Keys (domain-separated blake3, so no two kinds of entry can collide):
//! - account: `blake3("strata/acct\0" ‖ public key)` → balance u64 LE ‖ nonce u64 LE;
//! - user key: `blake3("strata/user\0" ‖ public key ‖ key length u8 ‖ key)` → the value;
//! - burned fees: `blake3("strata/burned\0")` → total u64 LE.
//!
//! Hashed keys are uniformly distributed, which is what the storage engine's
//! ordered memtable and the merkle trie want, and they are fixed-width.
//!
//! Execution order is canonical — by sender, then nonce — so a block's
//! outcome depends only on the finalized parent state and the block's
//! transaction set. A block whose transactions do not all apply (wrong nonce,
//! overdraft, overflow) is invalid as a whole.

use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;

pub use crate::contract::BlockEnv;
use crate::contract::Receipt;
use crate::tx::{PublicKey, Transaction, TxId, TxKind};

/// Most encoded transaction bytes in one block: a block travels whole in
/// one frame (4 MiB by default) when pushed or pulled, so it must fit
/// with room to spare. About 13,000 transfers; 85 of the largest deploys.
pub const BLOCK_TX_BYTES_MAX: usize = 2 << 20;
/// Most gas one block's deploys and calls may be given in all (the sum of
/// their limits, not of what they use: a block's cost is bounded before
/// it runs). 10 calls at the largest limit.
pub const BLOCK_GAS_MAX: u64 = 10 * strata_vm::limits::GAS_LIMIT_MAX;

/// A hashed state key.
pub type StateKey = [u8; 32];

/// The state key of `account`.
pub fn account_key(account: &PublicKey) -> StateKey {
    let mut h = blake3::Hasher::new();
    h.update(b"strata/acct\0");
    h.update(account);
    *h.finalize().as_bytes()
}

/// The state key of `key` in `owner`'s namespace.
pub fn user_key(owner: &PublicKey, key: &[u8]) -> StateKey {
    debug_assert!(key.len() <= u8::MAX as usize);
    let mut h = blake3::Hasher::new();
    h.update(b"strata/user\0");
    h.update(owner);
    h.update(&[key.len() as u8]);
    h.update(key);
    *h.finalize().as_bytes()
}

/// The state key of the burned-fees total.
pub fn burned_key() -> StateKey {
    *blake3::hash(b"strata/burned\0").as_bytes()
}

/// An account's balance and next nonce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Spendable balance.
    pub balance: u64,
    /// Nonce the account's next transaction must carry.
    pub nonce: u64,
}

impl Account {
    /// 16 bytes: balance then nonce, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.balance.to_le_bytes());
        out.extend_from_slice(&self.nonce.to_le_bytes());
        out
    }

    /// Strict decode of [`Account::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Option<Account> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        let (b, n) = bytes.split_at(8);
        Some(Account {
            balance: u64::from_le_bytes(b.try_into().ok()?),
            nonce: u64::from_le_bytes(n.try_into().ok()?),
        })
    }
}

/// Why execution failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ExecError {
    /// A transaction's nonce is not its sender's next nonce.
    #[error("sender {sender}: nonce {got}, expected {expected}", sender = hex::encode(sender))]
    BadNonce {
        /// Sender.
        sender: PublicKey,
        /// Expected nonce.
        expected: u64,
        /// Nonce in the transaction.
        got: u64,
    },
    /// The sender cannot pay.
    #[error("sender {sender}: balance {balance} below {needed}", sender = hex::encode(sender))]
    Insufficient {
        /// Sender.
        sender: PublicKey,
        /// Balance.
        balance: u64,
        /// Fee plus amount.
        needed: u64,
    },
    /// A credit would overflow a balance (or the burned total), or a gas
    /// budget (limit × price) overflows.
    #[error("balance overflow")]
    Overflow,
    /// The block's transactions pass a block-wide bound.
    #[error("block {what} total {total}, over the limit of {max}")]
    BlockTooLarge {
        /// Which bound.
        what: &'static str,
        /// The block's total.
        total: u64,
        /// The bound.
        max: u64,
    },
    /// A stored state entry does not decode.
    #[error("corrupt state entry {}", hex::encode(.0))]
    CorruptState(StateKey),
    /// Reading the state failed.
    #[error("state read failed: {0}")]
    Read(String),
}

impl ExecError {
    /// True when the failure is this node's own (a read of its store
    /// failed, or a stored entry is corrupt) rather than the transactions':
    /// such a block is not invalid, and no peer is to blame for it.
    pub fn is_local_fault(&self) -> bool {
        matches!(self, ExecError::Read(_) | ExecError::CorruptState(_))
    }
}

/// Read access to a finalized state (a storage snapshot, or a map in tests).
pub trait StateReader {
    /// The value under `key`.
    ///
    /// # Errors
    /// When the underlying store fails; the message is carried up.
    fn read(&self, key: &StateKey) -> Result<Option<Vec<u8>>, ExecError>;
}

impl StateReader for BTreeMap<StateKey, Vec<u8>> {
    fn read(&self, key: &StateKey) -> Result<Option<Vec<u8>>, ExecError> {
        Ok(self.get(key).cloned())
    }
}

/// The changes a block makes: a sorted run of `key → Some(value)` (put) or
/// `None` (delete), ready for the storage engine and the merkle trie.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDiff {
    /// Changes in ascending key order.
    pub changes: BTreeMap<StateKey, Option<Vec<u8>>>,
    /// Accounts whose balance changed other than as a transaction's
    /// sender or a transfer's recipient: contracts paid by calls, and
    /// whom contracts paid (the mempool's view of them is refreshed from
    /// these). Each once, sorted.
    pub touched: Vec<PublicKey>,
    /// The receipt of each deploy and call, in execution order: history
    /// kept with the block (and pruned with it), not state.
    pub receipts: Vec<(TxId, Receipt)>,
}

impl StateDiff {
    /// The account record of `account` as this diff writes it; `None` when
    /// the diff does not touch it (or deletes it, or the record does not
    /// decode, which execution never produces).
    pub fn account(&self, account: &PublicKey) -> Option<Account> {
        match self.changes.get(&account_key(account)) {
            Some(Some(bytes)) => Account::decode(bytes),
            _ => None,
        }
    }
}

/// Execution over a read-only base with an overlay of pending changes.
pub(crate) struct Overlay<'a, R: StateReader> {
    base: &'a R,
    pub(crate) changes: BTreeMap<StateKey, Option<Vec<u8>>>,
    /// See [`StateDiff::touched`].
    pub(crate) touched: Vec<PublicKey>,
    /// See [`StateDiff::receipts`].
    pub(crate) receipts: Vec<(TxId, Receipt)>,
}

impl<R: StateReader> Overlay<'_, R> {
    pub(crate) fn get(&self, key: &StateKey) -> Result<Option<Vec<u8>>, ExecError> {
        match self.changes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.read(key),
        }
    }

    pub(crate) fn account(&self, pk: &PublicKey) -> Result<Account, ExecError> {
        self.account_at(&account_key(pk))
    }

    /// The account stored under `key` (an [`account_key`]): execution
    /// hashes each public key once per transaction, not once per access.
    pub(crate) fn account_at(&self, key: &StateKey) -> Result<Account, ExecError> {
        match self.get(key)? {
            None => Ok(Account::default()),
            Some(bytes) => Account::decode(&bytes).ok_or(ExecError::CorruptState(*key)),
        }
    }

    /// Adds `amount` to `who`'s balance.
    ///
    /// # Errors
    /// [`ExecError::Overflow`] past `u64::MAX`; a read failure.
    pub(crate) fn credit(&mut self, who: &PublicKey, amount: u64) -> Result<(), ExecError> {
        self.adjust(who, |b| b.checked_add(amount))
    }

    /// Takes `amount` from `who`'s balance.
    ///
    /// # Errors
    /// [`ExecError::Overflow`] below zero (callers check first: a
    /// contract's payments never exceed its balance); a read failure.
    pub(crate) fn debit(&mut self, who: &PublicKey, amount: u64) -> Result<(), ExecError> {
        self.adjust(who, |b| b.checked_sub(amount))
    }

    fn adjust(
        &mut self,
        who: &PublicKey,
        f: impl FnOnce(u64) -> Option<u64>,
    ) -> Result<(), ExecError> {
        let key = account_key(who);
        let mut a = self.account_at(&key)?;
        a.balance = f(a.balance).ok_or(ExecError::Overflow)?;
        self.set_account_at(key, a);
        Ok(())
    }

    pub(crate) fn set_account_at(&mut self, key: StateKey, account: Account) {
        self.changes.insert(key, Some(account.encode()));
    }

    fn burned(&self) -> Result<u64, ExecError> {
        let key = burned_key();
        match self.get(&key)? {
            None => Ok(0),
            Some(b) => Ok(u64::from_le_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| ExecError::CorruptState(key))?,
            )),
        }
    }
}

/// Reads an account from a finalized state.
///
/// # Errors
/// On read failure or a corrupt entry.
pub fn read_account(reader: &impl StateReader, pk: &PublicKey) -> Result<Account, ExecError> {
    Overlay {
        base: reader,
        changes: BTreeMap::new(),
        touched: Vec::new(),
        receipts: Vec::new(),
    }
    .account(pk)
}

/// Blocks at least this large are read ahead ([`read_ahead`]) before they
/// are executed: below it, starting a thread costs more than it saves.
pub const READ_AHEAD_TXS_MIN: usize = 512;

/// The existing state entries executing `txs` reads: every sender's and
/// every recipient's account, and the burned-fees total (sorted, each
/// once).
pub fn read_set(txs: &[Arc<Transaction>]) -> Vec<StateKey> {
    let mut keys = Vec::with_capacity(2 * txs.len() + 1);
    keys.push(burned_key());
    for tx in txs {
        keys.push(account_key(tx.sender()));
        if let TxKind::Transfer { to, .. } = &tx.body().kind {
            keys.push(account_key(to));
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Reads `keys` through `reader` on `threads` threads and hands back the
/// values in `keys`' order. Execution reads one entry after another; on a
/// large state most of them miss every cache, so reading them first on
/// all cores, then executing from memory, takes a block's reads off the
/// critical path's single thread.
///
/// # Errors
/// The first read that failed.
pub fn read_ahead<R: StateReader + Sync>(
    reader: &R,
    keys: &[StateKey],
    threads: usize,
) -> Result<Vec<Option<Vec<u8>>>, ExecError> {
    let per = keys.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = keys
            .chunks(per)
            .skip(1)
            .map(|part| scope.spawn(move || part.iter().map(|k| reader.read(k)).collect()))
            .collect();
        let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(keys.len());
        for k in keys.iter().take(per) {
            out.push(reader.read(k)?);
        }
        for part in parts {
            let values: Vec<Result<Option<Vec<u8>>, ExecError>> =
                part.join().expect("state reads do not panic");
            for v in values {
                out.push(v?);
            }
        }
        Ok(out)
    })
}

/// A [`StateReader`] over entries read ahead ([`read_ahead`]), falling
/// back to `base` for anything else.
pub struct ReadAhead<'a, R> {
    base: &'a R,
    /// Sorted ([`read_set`]): looked up by binary search.
    keys: Vec<StateKey>,
    /// `keys`' values, in the same order.
    values: Vec<Option<Vec<u8>>>,
}

impl<'a, R: StateReader + Sync> ReadAhead<'a, R> {
    /// Reads what `txs` will read from `base`, on `threads` threads.
    ///
    /// # Errors
    /// The first read that failed.
    pub fn new(base: &'a R, txs: &[Arc<Transaction>], threads: usize) -> Result<Self, ExecError> {
        let keys = read_set(txs);
        let values = read_ahead(base, &keys, threads)?;
        Ok(ReadAhead { base, keys, values })
    }
}

impl<R: StateReader> StateReader for ReadAhead<'_, R> {
    fn read(&self, k: &StateKey) -> Result<Option<Vec<u8>>, ExecError> {
        match self.keys.binary_search(k) {
            Ok(i) => Ok(self.values[i].clone()),
            Err(_) => self.base.read(k),
        }
    }
}

/// [`execute`] with a block's reads done first on `threads` threads when
/// it holds at least [`READ_AHEAD_TXS_MIN`] transactions.
///
/// # Errors
/// As [`execute`].
pub fn execute_read_ahead<R: StateReader + Sync>(
    base: &R,
    env: BlockEnv,
    txs: &[Arc<Transaction>],
    threads: usize,
) -> Result<StateDiff, ExecError> {
    if txs.len() < READ_AHEAD_TXS_MIN || threads < 2 {
        return execute(base, env, txs);
    }
    execute(&ReadAhead::new(base, txs, threads)?, env, txs)
}

/// Checks the block-wide bounds on `txs`: their encoded bytes within
/// [`BLOCK_TX_BYTES_MAX`] and their gas limits within [`BLOCK_GAS_MAX`].
///
/// # Errors
/// [`ExecError::BlockTooLarge`] naming the bound passed.
pub fn check_block_bounds(txs: &[Arc<Transaction>]) -> Result<(), ExecError> {
    let bytes: usize = txs.iter().map(|t| t.encoded().len()).sum();
    if bytes > BLOCK_TX_BYTES_MAX {
        return Err(ExecError::BlockTooLarge {
            what: "transaction bytes",
            total: bytes as u64,
            max: BLOCK_TX_BYTES_MAX as u64,
        });
    }
    let gas = txs
        .iter()
        .fold(0u64, |g, t| g.saturating_add(t.body().kind.gas_limit()));
    if gas > BLOCK_GAS_MAX {
        return Err(ExecError::BlockTooLarge {
            what: "gas limits",
            total: gas,
            max: BLOCK_GAS_MAX,
        });
    }
    Ok(())
}

/// Executes `txs` (a block's transactions, in any order) against `base`, in
/// canonical order, returning the state diff. `env` is the block's height
/// and time, which contracts may read.
///
/// # Errors
/// The first transaction that does not apply makes the block invalid, as
/// do transactions past the block bounds ([`check_block_bounds`]). A
/// deploy or call that fails is not an error: its receipt says why.
pub fn execute(
    base: &impl StateReader,
    env: BlockEnv,
    txs: &[Arc<Transaction>],
) -> Result<StateDiff, ExecError> {
    check_block_bounds(txs)?;
    let mut order: Vec<&Arc<Transaction>> = txs.iter().collect();
    order.sort_unstable_by(|a, b| (a.sender(), a.nonce()).cmp(&(b.sender(), b.nonce())));
    let mut state = Overlay {
        base,
        changes: BTreeMap::new(),
        touched: Vec::new(),
        receipts: Vec::new(),
    };
    let mut burned = state.burned()?;
    for tx in order {
        let sender = *tx.sender();
        let sender_key = account_key(&sender);
        let mut from = state.account_at(&sender_key)?;
        if tx.nonce() != from.nonce {
            return Err(ExecError::BadNonce {
                sender,
                expected: from.nonce,
                got: tx.nonce(),
            });
        }
        let kind = &tx.body().kind;
        let amount = match *kind {
            TxKind::Transfer { amount, .. } | TxKind::Call { value: amount, .. } => amount,
            _ => 0,
        };
        let gas_budget = kind.gas_budget_checked().ok_or(ExecError::Overflow)?;
        let needed = tx
            .fee()
            .checked_add(amount)
            .and_then(|n| n.checked_add(gas_budget))
            .ok_or(ExecError::Overflow)?;
        from.balance = from
            .balance
            .checked_sub(needed)
            .ok_or(ExecError::Insufficient {
                sender,
                balance: from.balance,
                needed,
            })?;
        from.nonce += 1;
        state.set_account_at(sender_key, from);
        burned = burned.checked_add(tx.fee()).ok_or(ExecError::Overflow)?;
        match &tx.body().kind {
            TxKind::Transfer { to, amount } => state.credit(to, *amount)?,
            TxKind::Put { key, value } => {
                state
                    .changes
                    .insert(user_key(&sender, key), Some(value.clone()));
            }
            TxKind::Delete { key } => {
                state.changes.insert(user_key(&sender, key), None);
            }
            TxKind::Deploy { gas_price, .. } | TxKind::Call { gas_price, .. } => {
                let gas_price = *gas_price;
                let gas_used = crate::contract::execute(&mut state, env, tx)?;
                // At most gas_limit × gas_price, checked above.
                burned = burned
                    .checked_add(gas_used * gas_price)
                    .ok_or(ExecError::Overflow)?;
            }
        }
    }
    if !txs.is_empty() {
        state
            .changes
            .insert(burned_key(), Some(burned.to_le_bytes().to_vec()));
    }
    let mut touched = state.touched;
    touched.sort_unstable();
    touched.dedup();
    Ok(StateDiff {
        changes: state.changes,
        touched,
        receipts: state.receipts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::{signing_key_from_seed, TxBody};

    fn pk(seed: u8) -> PublicKey {
        signing_key_from_seed(&[seed; 32])
            .verifying_key()
            .to_bytes()
    }

    fn transfer(seed: u8, nonce: u64, to: u8, amount: u64, fee: u64) -> Arc<Transaction> {
        let k = signing_key_from_seed(&[seed; 32]);
        Arc::new(
            TxBody {
                chain_id: 1,
                sender: pk(seed),
                nonce,
                fee,
                kind: TxKind::Transfer { to: pk(to), amount },
            }
            .sign(&k)
            .unwrap(),
        )
    }

    fn funded(accounts: &[(u8, u64)]) -> BTreeMap<StateKey, Vec<u8>> {
        accounts
            .iter()
            .map(|(s, b)| {
                (
                    account_key(&pk(*s)),
                    Account {
                        balance: *b,
                        nonce: 0,
                    }
                    .encode(),
                )
            })
            .collect()
    }

    fn apply(base: &mut BTreeMap<StateKey, Vec<u8>>, diff: StateDiff) {
        for (k, v) in diff.changes {
            match v {
                Some(v) => base.insert(k, v),
                None => base.remove(&k),
            };
        }
    }

    fn supply(state: &BTreeMap<StateKey, Vec<u8>>, seeds: &[u8]) -> u64 {
        let balances: u64 = seeds
            .iter()
            .map(|s| read_account(state, &pk(*s)).unwrap().balance)
            .sum();
        let burned = state
            .get(&burned_key())
            .map_or(0, |b| u64::from_le_bytes(b.as_slice().try_into().unwrap()));
        balances + burned
    }

    /// Reading ahead on several threads changes nothing of the outcome,
    /// valid block or not.
    #[test]
    fn read_ahead_executes_like_plain_execution() {
        let base = funded(&(1..=40).map(|s| (s, 1_000)).collect::<Vec<_>>());
        let mut txs = Vec::new();
        for nonce in 0..15 {
            for s in 1..=40u8 {
                txs.push(transfer(s, nonce, 41 + (s + nonce as u8) % 50, 3, 1));
            }
        }
        assert!(txs.len() >= READ_AHEAD_TXS_MIN);
        for threads in [1, 2, 3] {
            assert_eq!(
                execute_read_ahead(&base, BlockEnv::default(), &txs, threads).unwrap(),
                execute(&base, BlockEnv::default(), &txs).unwrap()
            );
        }
        txs.push(transfer(1, 99, 2, 1, 1)); // a nonce gap: the block is invalid
        assert_eq!(
            execute_read_ahead(&base, BlockEnv::default(), &txs, 2).unwrap_err(),
            execute(&base, BlockEnv::default(), &txs).unwrap_err()
        );
    }

    #[test]
    fn order_inside_the_block_does_not_matter() {
        let base = funded(&[(1, 100), (2, 100)]);
        let txs = vec![
            transfer(1, 1, 2, 5, 1),
            transfer(2, 0, 1, 7, 1),
            transfer(1, 0, 2, 3, 1),
        ];
        let mut reversed = txs.clone();
        reversed.reverse();
        assert_eq!(
            execute(&base, BlockEnv::default(), &txs).unwrap(),
            execute(&base, BlockEnv::default(), &reversed).unwrap()
        );
    }

    // The engine now takes a committed block's senders' next nonces from
    // its diff (not from the store) to clear the mempool: the diff must
    // give exactly the post-block account, and nothing for an account the
    // block does not touch.
    #[test]
    fn a_diff_gives_the_accounts_it_writes() {
        let base = funded(&[(1, 100), (2, 100), (3, 100)]);
        let diff = execute(
            &base,
            BlockEnv::default(),
            &[transfer(1, 0, 2, 5, 1), transfer(1, 1, 2, 3, 1)],
        )
        .unwrap();
        assert_eq!(
            diff.account(&pk(1)),
            Some(Account {
                balance: 100 - 5 - 3 - 2,
                nonce: 2
            })
        );
        assert_eq!(
            diff.account(&pk(2)),
            Some(Account {
                balance: 108,
                nonce: 0
            })
        );
        assert_eq!(diff.account(&pk(3)), None);
    }

    #[test]
    fn nonce_gap_and_overdraft_invalidate_the_block() {
        let base = funded(&[(1, 10)]);
        assert!(matches!(
            execute(&base, BlockEnv::default(), &[transfer(1, 1, 2, 1, 1)]),
            Err(ExecError::BadNonce {
                expected: 0,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            execute(&base, BlockEnv::default(), &[transfer(1, 0, 2, 10, 1)]),
            Err(ExecError::Insufficient { needed: 11, .. })
        ));
    }

    #[test]
    fn supply_is_conserved_over_random_blocks() {
        let seeds: Vec<u8> = (1..=8).collect();
        let mut state = funded(&seeds.iter().map(|s| (*s, 1_000)).collect::<Vec<_>>());
        let total = supply(&state, &seeds);
        let mut nonces = [0u64; 9];
        let mut x = 12345u64;
        for _block in 0..30 {
            let mut txs = Vec::new();
            for _ in 0..10 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let from = seeds[(x >> 33) as usize % seeds.len()];
                let to = seeds[(x >> 40) as usize % seeds.len()];
                let bal = read_account(&state, &pk(from)).unwrap().balance;
                let spent: u64 = txs
                    .iter()
                    .filter(|t: &&Arc<Transaction>| *t.sender() == pk(from))
                    .map(|t| crate::mempool::spend_of(t))
                    .sum();
                let amount = (x >> 50) % 20;
                if bal < spent + amount + 1 {
                    continue;
                }
                txs.push(transfer(from, nonces[from as usize], to, amount, 1));
                nonces[from as usize] += 1;
            }
            let diff = execute(&state, BlockEnv::default(), &txs).unwrap();
            apply(&mut state, diff);
            assert_eq!(supply(&state, &seeds), total);
        }
    }
}
