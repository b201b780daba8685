//! Mirrors ipmb 0.8.5's `examples/region_free.rs` against busbar, call for
//! call: a region allocated with a free callback, dropped; the next
//! allocation finds it free and runs the callback, which prints `free`.
//! (ipmb's `alloc` returns an `Option`, busbar's a `Result`: the same code
//! compiles against both.)

fn main() {
    let mut registry = busbar::MemoryRegistry::default();

    let region = registry.alloc_with_free(0, None, || {
        println!("free");
    });

    drop(region);

    let _region = registry.alloc(0, None).unwrap();
}
