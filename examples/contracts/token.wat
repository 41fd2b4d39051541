;; A fungible token with allowances, in the manner of ERC-20.
;;
;; Entry points and their input (amounts are u64 little-endian, accounts
;; 32-byte public keys):
;;   init           supply (8)              the caller gets the supply; once only
;;   transfer       to (32) ‖ amount (8)
;;   approve        spender (32) ‖ amount (8)   sets what spender may take
;;   transfer_from  owner (32) ‖ to (32) ‖ amount (8)   spends an allowance
;;   balance_of     account (32)            returns its balance (8)
;;   allowance      owner (32) ‖ spender (32)   returns the allowance (8)
;; Each move emits from ‖ to ‖ amount (72 bytes). Failures revert with a
;; message: "bad input", "insufficient balance", "insufficient allowance",
;; "already initialised".
;;
;; Storage: "b" ‖ account → balance; "a" ‖ owner ‖ spender → allowance;
;; "init" → the supply. Balances never overflow: their sum is the supply.
(module
  (import "strata" "input_len" (func $input_len (result i32)))
  (import "strata" "input_read" (func $input_read (param i32)))
  (import "strata" "storage_read" (func $sread (param i32 i32 i32 i32) (result i32)))
  (import "strata" "storage_write" (func $swrite (param i32 i32 i32 i32)))
  (import "strata" "caller" (func $caller (param i32)))
  (import "strata" "emit" (func $emit (param i32 i32)))
  (import "strata" "set_return" (func $ret (param i32 i32)))
  (import "strata" "revert" (func $revert (param i32 i32)))
  (memory (export "memory") 1)
  ;; 0: input   1024: caller   1100: key   1200: u64 scratch   1300: event
  (data (i32.const 2000) "bad input")
  (data (i32.const 2016) "insufficient balance")
  (data (i32.const 2048) "insufficient allowance")
  (data (i32.const 2080) "already initialised")
  (data (i32.const 2112) "init")

  (func $fail (param $msg i32) (param $len i32)
    (call $revert (local.get $msg) (local.get $len)))

  ;; Reads the input to 0; it must be exactly $want bytes.
  (func $input (param $want i32)
    (if (i32.ne (call $input_len) (local.get $want))
      (then (call $fail (i32.const 2000) (i32.const 9))))
    (call $input_read (i32.const 0)))

  ;; Builds tag ‖ 32 bytes at $a at 1100; its length.
  (func $key1 (param $tag i32) (param $a i32) (result i32)
    (i32.store8 (i32.const 1100) (local.get $tag))
    (memory.copy (i32.const 1101) (local.get $a) (i32.const 32))
    (i32.const 33))

  ;; Builds tag ‖ 32 bytes at $a ‖ 32 bytes at $b at 1100; its length.
  (func $key2 (param $tag i32) (param $a i32) (param $b i32) (result i32)
    (drop (call $key1 (local.get $tag) (local.get $a)))
    (memory.copy (i32.const 1133) (local.get $b) (i32.const 32))
    (i32.const 65))

  ;; The u64 under the key at 1100 of length $klen (0 when absent).
  (func $get (param $klen i32) (result i64)
    (if (result i64)
      (i32.eq (call $sread (i32.const 1100) (local.get $klen) (i32.const 1200) (i32.const 8))
              (i32.const 8))
      (then (i64.load (i32.const 1200)))
      (else (i64.const 0))))

  (func $put (param $klen i32) (param $v i64)
    (i64.store (i32.const 1200) (local.get $v))
    (call $swrite (i32.const 1100) (local.get $klen) (i32.const 1200) (i32.const 8)))

  ;; Moves $amount from the account at $from to the one at $to.
  (func $move (param $from i32) (param $to i32) (param $amount i64)
    (local $k i32) (local $b i64)
    (local.set $k (call $key1 (i32.const 98) (local.get $from)))
    (local.set $b (call $get (local.get $k)))
    (if (i64.lt_u (local.get $b) (local.get $amount))
      (then (call $fail (i32.const 2016) (i32.const 20))))
    (call $put (local.get $k) (i64.sub (local.get $b) (local.get $amount)))
    (local.set $k (call $key1 (i32.const 98) (local.get $to)))
    (call $put (local.get $k) (i64.add (call $get (local.get $k)) (local.get $amount)))
    (memory.copy (i32.const 1300) (local.get $from) (i32.const 32))
    (memory.copy (i32.const 1332) (local.get $to) (i32.const 32))
    (i64.store (i32.const 1364) (local.get $amount))
    (call $emit (i32.const 1300) (i32.const 72)))

  (func (export "init")
    (call $input (i32.const 8))
    (if (i32.ne (call $sread (i32.const 2112) (i32.const 4) (i32.const 1200) (i32.const 0))
                (i32.const -1))
      (then (call $fail (i32.const 2080) (i32.const 19))))
    (call $swrite (i32.const 2112) (i32.const 4) (i32.const 0) (i32.const 8))
    (call $caller (i32.const 1024))
    (call $put (call $key1 (i32.const 98) (i32.const 1024)) (i64.load (i32.const 0))))

  (func (export "transfer")
    (call $input (i32.const 40))
    (call $caller (i32.const 1024))
    (call $move (i32.const 1024) (i32.const 0) (i64.load (i32.const 32))))

  (func (export "approve")
    (call $input (i32.const 40))
    (call $caller (i32.const 1024))
    (call $put (call $key2 (i32.const 97) (i32.const 1024) (i32.const 0))
               (i64.load (i32.const 32))))

  (func (export "transfer_from")
    (local $k i32) (local $a i64) (local $amount i64)
    (call $input (i32.const 72))
    (call $caller (i32.const 1024))
    (local.set $amount (i64.load (i32.const 64)))
    (local.set $k (call $key2 (i32.const 97) (i32.const 0) (i32.const 1024)))
    (local.set $a (call $get (local.get $k)))
    (if (i64.lt_u (local.get $a) (local.get $amount))
      (then (call $fail (i32.const 2048) (i32.const 22))))
    (call $put (local.get $k) (i64.sub (local.get $a) (local.get $amount)))
    (call $move (i32.const 0) (i32.const 32) (local.get $amount)))

  (func (export "balance_of")
    (call $input (i32.const 32))
    (i64.store (i32.const 1200) (call $get (call $key1 (i32.const 98) (i32.const 0))))
    (call $ret (i32.const 1200) (i32.const 8)))

  (func (export "allowance")
    (call $input (i32.const 64))
    (i64.store (i32.const 1200) (call $get (call $key2 (i32.const 97) (i32.const 0) (i32.const 32))))
    (call $ret (i32.const 1200) (i32.const 8))))
