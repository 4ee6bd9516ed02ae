//! Drives a split virtqueue from the driver side to the device side and
//! prints what happened: direct and indirect chains, a malformed chain that
//! is rejected and still returned, and the notification decisions.
//!
//! Run with `cargo run -p virtio-backend-core --features driver --example split_demo`.
// An example program, not library code: it may stop on its own setup errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::process::ExitCode;

use virtio_core::driver::SplitDriver;
use virtio_core::memory::{GuestMemory, Region};
use virtio_core::queue::{Chain, QueueError, Segment, SplitQueue};
use virtio_core::spec::{Features, VirtqDesc};
use zerocopy::IntoBytes;

/// The "device": reads a text request, answers with it upper-cased.
fn serve(mem: &Region, queue: &mut SplitQueue<16>) -> Result<bool, QueueError> {
    // The chain is storage the device owns; every pop fills it in place.
    let mut chain = Chain::<8>::new();
    loop {
        match queue.pop(mem, &mut chain) {
            Ok(false) => break,
            Ok(true) => {
                let mut text = vec![0u8; chain.readable_len() as usize];
                let mut reader = chain.reader(mem);
                let read = reader.read_exact(&mut text);
                let mut writer = chain.writer(mem);
                let answer = text.to_ascii_uppercase();
                let n = answer.len().min(writer.remaining() as usize);
                let wrote = read.and_then(|()| writer.write_all(&answer[..n]));
                println!(
                    "  device: chain head {:>2}: {} segment(s), {} B readable, {} B writable, read {:?} -> {}",
                    chain.id(),
                    chain.segments().len(),
                    chain.readable_len(),
                    chain.writable_len(),
                    String::from_utf8_lossy(&text),
                    if wrote.is_ok() {
                        "answered"
                    } else {
                        "short buffer"
                    },
                );
                queue.push_used(mem, chain.head(), writer.bytes_written())?;
            }
            Err(e) => match e.head() {
                Some(head) => {
                    // A device with a status field would write its error
                    // status into `e.salvage()` here; this one has none.
                    println!("  device: rejected {e}; returned with used length 0");
                    queue.push_used(mem, head, 0)?;
                }
                None => return Err(e),
            },
        }
    }
    queue.publish_used(mem)
}

fn main() -> ExitCode {
    const SIZE: u16 = 16;
    // Guest RAM: u64s so the host mapping is aligned like the guest's.
    let mut ram = vec![0u64; 0x10000 / 8];
    let mem = Region::new(0x4000_0000, ram.as_mut_bytes()).expect("region");
    let base = mem.base();
    let features = Features::VERSION_1 | Features::INDIRECT_DESC | Features::EVENT_IDX;
    let layout = SplitDriver::layout(base, SIZE);
    let mut driver = SplitDriver::new(&mem, layout, features).expect("driver ring");
    let mut device = SplitQueue::<16>::new(&mem, layout, features).expect("device ring");
    println!(
        "split queue of {SIZE} at {:#x} (avail {:#x}, used {:#x}), features {:?}",
        layout.desc_addr, layout.driver_addr, layout.device_addr, features
    );

    let data = base + 0x8000;
    let words = ["virtio", "split ", "ring", "device side"];
    let mut ids = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let at = data + 0x100 * i as u64;
        // Requests split across two readable descriptors, one writable.
        let (a, b) = w.as_bytes().split_at(w.len() / 2);
        mem.write(at, a).unwrap();
        mem.write(at + 0x40, b).unwrap();
        let rd = [
            Segment {
                addr: at,
                len: a.len() as u32,
            },
            Segment {
                addr: at + 0x40,
                len: b.len() as u32,
            },
        ];
        let wr = [Segment {
            addr: at + 0x80,
            len: 32,
        }];
        let id = if i % 2 == 0 {
            driver.add(&mem, &rd, &wr).unwrap()
        } else {
            driver.add_indirect(&mem, at + 0xc0, &rd, &wr).unwrap()
        };
        ids.push((id, at + 0x80));
    }
    // A malformed chain: readable after writable breaks a driver MUST.
    let bad = driver
        .add(
            &mem,
            &[],
            &[Segment {
                addr: data + 0x800,
                len: 8,
            }],
        )
        .unwrap();
    let mut desc: VirtqDesc = mem
        .read_obj(layout.desc_addr + 16 * u64::from(bad))
        .unwrap();
    desc.flags = 3.into(); // WRITE | NEXT ...
    desc.next = ids[0].0.into(); // ... into a readable descriptor
    mem.write_obj(layout.desc_addr + 16 * u64::from(bad), &desc)
        .unwrap();

    let kick = driver.publish_avail(&mem).unwrap();
    println!("driver: made 5 chains available; notify device: {kick}");
    let interrupt = match serve(&mem, &mut device) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("device: ring corrupt: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "device: published used index {}; interrupt driver: {interrupt}",
        device.next_used()
    );

    let mut ok = true;
    while let Some(used) = driver.pop_used(&mem).unwrap() {
        match ids.iter().position(|&(id, _)| id == used.id) {
            Some(i) => {
                let mut out = vec![0u8; used.len as usize];
                mem.read(ids[i].1, &mut out).unwrap();
                let want = words[i].to_ascii_uppercase();
                ok &= out == want.as_bytes();
                println!(
                    "driver: used id {:>2}, {:>2} B: {:?}",
                    used.id,
                    used.len,
                    String::from_utf8_lossy(&out)
                );
            }
            None => {
                ok &= used.id == bad && used.len == 0;
                println!(
                    "driver: used id {:>2}, {:>2} B (the rejected chain, returned)",
                    used.id, used.len
                );
            }
        }
    }
    let re_enabled = device.enable_notification(&mem).unwrap();
    println!("device: notifications re-enabled; buffers pending after re-check: {re_enabled}");
    println!("driver: {} descriptors free of {SIZE}", driver.num_free());
    if ok && driver.num_free() == SIZE {
        println!("ok: every request answered, every buffer returned");
        ExitCode::SUCCESS
    } else {
        println!("MISMATCH");
        ExitCode::FAILURE
    }
}
