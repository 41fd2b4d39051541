;; A counter. `bump` adds one to the 8-byte little-endian count under key
;; "n", emits the new count and returns it; `get` returns it.
;;
;;   strata tx --key K --wait deploy examples/contracts/counter.wat
;;   strata tx --key K --wait call CONTRACT bump
(module
  (import "strata" "storage_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "strata" "storage_write" (func $write (param i32 i32 i32 i32)))
  (import "strata" "emit" (func $emit (param i32 i32)))
  (import "strata" "set_return" (func $ret (param i32 i32)))
  (memory (export "memory") 1)
  ;; 0: the key "n"; 16: the count.
  (data (i32.const 0) "n")

  ;; Loads the count to 16 (0 when absent).
  (func $load
    (if (i32.ne (call $read (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 8))
                (i32.const 8))
      (then (i64.store (i32.const 16) (i64.const 0)))))

  (func (export "bump")
    (call $load)
    (i64.store (i32.const 16) (i64.add (i64.load (i32.const 16)) (i64.const 1)))
    (call $write (i32.const 0) (i32.const 1) (i32.const 16) (i32.const 8))
    (call $emit (i32.const 16) (i32.const 8))
    (call $ret (i32.const 16) (i32.const 8)))

  (func (export "get")
    (call $load)
    (call $ret (i32.const 16) (i32.const 8))))
