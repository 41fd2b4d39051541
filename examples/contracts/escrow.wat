;; An escrow of the chain's own currency, settled by an arbiter.
;;
;; Entry points and their input (accounts are 32-byte public keys):
;;   open     beneficiary (32) ‖ arbiter (32)   called with a value: holds it
;;                                              for the caller (one open
;;                                              escrow per depositor)
;;   release  depositor (32)    the arbiter pays the held value to the beneficiary
;;   refund   depositor (32)    the arbiter pays it back to the depositor
;;   show     depositor (32)    returns beneficiary ‖ arbiter ‖ amount (72), or nothing
;; Failures revert with "bad input", "nothing paid", "already open",
;; "no escrow" or "not the arbiter". Settling emits depositor ‖ payee ‖
;; amount (72 bytes).
;;
;; Storage: "e" ‖ depositor → beneficiary (32) ‖ arbiter (32) ‖ amount (8).
(module
  (import "strata" "input_len" (func $input_len (result i32)))
  (import "strata" "input_read" (func $input_read (param i32)))
  (import "strata" "storage_read" (func $sread (param i32 i32 i32 i32) (result i32)))
  (import "strata" "storage_write" (func $swrite (param i32 i32 i32 i32)))
  (import "strata" "storage_delete" (func $sdelete (param i32 i32)))
  (import "strata" "caller" (func $caller (param i32)))
  (import "strata" "value" (func $value (result i64)))
  (import "strata" "transfer" (func $transfer (param i32 i64) (result i32)))
  (import "strata" "emit" (func $emit (param i32 i32)))
  (import "strata" "set_return" (func $ret (param i32 i32)))
  (import "strata" "revert" (func $revert (param i32 i32)))
  (memory (export "memory") 1)
  ;; 0: input   1024: caller   1100: key (33)   1200: record (72)   1300: event (72)
  (data (i32.const 2000) "bad input")
  (data (i32.const 2016) "nothing paid")
  (data (i32.const 2032) "already open")
  (data (i32.const 2048) "no escrow")
  (data (i32.const 2064) "not the arbiter")

  (func $fail (param $msg i32) (param $len i32)
    (call $revert (local.get $msg) (local.get $len)))

  (func $input (param $want i32)
    (if (i32.ne (call $input_len) (local.get $want))
      (then (call $fail (i32.const 2000) (i32.const 9))))
    (call $input_read (i32.const 0)))

  ;; The key "e" ‖ the 32 bytes at $who, at 1100.
  (func $key (param $who i32)
    (i32.store8 (i32.const 1100) (i32.const 101))
    (memory.copy (i32.const 1101) (local.get $who) (i32.const 32)))

  ;; Loads the depositor's (at 0) record to 1200; fails when there is none.
  (func $load
    (call $key (i32.const 0))
    (if (i32.ne (call $sread (i32.const 1100) (i32.const 33) (i32.const 1200) (i32.const 72))
                (i32.const 72))
      (then (call $fail (i32.const 2048) (i32.const 9)))))

  ;; Pays the held amount to the 32 bytes at $payee, if the caller is the
  ;; arbiter, and closes the escrow.
  (func $settle (param $payee i32)
    (call $caller (i32.const 1024))
    (if (i32.eqz (call $eq32 (i32.const 1024) (i32.const 1232)))
      (then (call $fail (i32.const 2064) (i32.const 15))))
    (call $sdelete (i32.const 1100) (i32.const 33))
    (drop (call $transfer (local.get $payee) (i64.load (i32.const 1264))))
    (memory.copy (i32.const 1300) (i32.const 0) (i32.const 32))
    (memory.copy (i32.const 1332) (local.get $payee) (i32.const 32))
    (i64.store (i32.const 1364) (i64.load (i32.const 1264)))
    (call $emit (i32.const 1300) (i32.const 72)))

  ;; Whether the 32 bytes at $a and $b are equal.
  (func $eq32 (param $a i32) (param $b i32) (result i32)
    (local $i i32)
    (block $differ
      (loop $l
        (br_if $differ (i64.ne (i64.load (i32.add (local.get $a) (local.get $i)))
                               (i64.load (i32.add (local.get $b) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br_if $l (i32.lt_u (local.get $i) (i32.const 32))))
      (return (i32.const 1)))
    (i32.const 0))

  (func (export "open")
    (call $input (i32.const 64))
    (if (i64.eqz (call $value)) (then (call $fail (i32.const 2016) (i32.const 12))))
    (call $caller (i32.const 1024))
    (call $key (i32.const 1024))
    (if (i32.ne (call $sread (i32.const 1100) (i32.const 33) (i32.const 1200) (i32.const 0))
                (i32.const -1))
      (then (call $fail (i32.const 2032) (i32.const 12))))
    (memory.copy (i32.const 1200) (i32.const 0) (i32.const 64))
    (i64.store (i32.const 1264) (call $value))
    (call $swrite (i32.const 1100) (i32.const 33) (i32.const 1200) (i32.const 72)))

  (func (export "release")
    (call $input (i32.const 32))
    (call $load)
    (call $settle (i32.const 1200)))

  (func (export "refund")
    (call $input (i32.const 32))
    (call $load)
    (call $settle (i32.const 0)))

  (func (export "show")
    (call $input (i32.const 32))
    (call $key (i32.const 0))
    (if (i32.eq (call $sread (i32.const 1100) (i32.const 33) (i32.const 1200) (i32.const 72))
                (i32.const 72))
      (then (call $ret (i32.const 1200) (i32.const 72))))))
