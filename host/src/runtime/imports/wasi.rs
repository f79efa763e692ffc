//! The WASI a module gets: clocks (to sleep on), random (for jitter), and the I/O and CLI
//! basics the Rust standard library links, all over a context that grants nothing: no
//! environment variables, arguments, preopened directories or network, and stdio goes
//! nowhere. Filesystem, sockets and HTTP are not linked at all.

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings::{cli, clocks, io, random};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::{HostMonotonicClock, WasiCtx, WasiCtxBuilder, WasiView};

use super::Import;
use crate::runtime::limits::CallBudget;
use crate::runtime::sandbox::{CallState, RandomSource};

/// Each granted WASI interface with the wasmtime-wasi function that links it.
pub(super) const IMPORTS: &[Import] = &[
    Import { interface: "wasi:io/error", add_to_linker: |l| io::error::add_to_linker::<_, Io>(l, table) },
    Import { interface: "wasi:io/poll", add_to_linker: |l| io::poll::add_to_linker::<_, Polls>(l, polls) },
    Import { interface: "wasi:io/streams", add_to_linker: |l| io::streams::add_to_linker::<_, Io>(l, table) },
    Import {
        interface: "wasi:clocks/monotonic-clock",
        add_to_linker: |l| clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(l, CallState::clocks),
    },
    Import {
        interface: "wasi:clocks/wall-clock",
        add_to_linker: |l| clocks::wall_clock::add_to_linker::<_, WasiClocks>(l, CallState::clocks),
    },
    Import {
        interface: "wasi:random/random",
        add_to_linker: |l| random::random::add_to_linker::<_, WasiRandom>(l, CallState::random),
    },
    Import {
        interface: "wasi:random/insecure",
        add_to_linker: |l| random::insecure::add_to_linker::<_, WasiRandom>(l, CallState::random),
    },
    Import {
        interface: "wasi:random/insecure-seed",
        add_to_linker: |l| random::insecure_seed::add_to_linker::<_, WasiRandom>(l, CallState::random),
    },
    Import {
        interface: "wasi:cli/environment",
        add_to_linker: |l| cli::environment::add_to_linker::<_, WasiCli>(l, CallState::cli),
    },
    Import {
        interface: "wasi:cli/exit",
        add_to_linker: |l| cli::exit::add_to_linker::<_, WasiCli>(l, CallState::cli),
    },
    Import {
        interface: "wasi:cli/stdin",
        add_to_linker: |l| cli::stdin::add_to_linker::<_, WasiCli>(l, CallState::cli),
    },
    Import {
        interface: "wasi:cli/stdout",
        add_to_linker: |l| cli::stdout::add_to_linker::<_, WasiCli>(l, CallState::cli),
    },
    Import {
        interface: "wasi:cli/stderr",
        add_to_linker: |l| cli::stderr::add_to_linker::<_, WasiCli>(l, CallState::cli),
    },
    Import {
        interface: "wasi:cli/terminal-input",
        add_to_linker: |l| cli::terminal_input::add_to_linker::<_, WasiCli>(l, CallState::cli),
    },
    Import {
        interface: "wasi:cli/terminal-output",
        add_to_linker: |l| cli::terminal_output::add_to_linker::<_, WasiCli>(l, CallState::cli),
    },
    Import {
        interface: "wasi:cli/terminal-stdin",
        add_to_linker: |l| cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, CallState::cli),
    },
    Import {
        interface: "wasi:cli/terminal-stdout",
        add_to_linker: |l| cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, CallState::cli),
    },
    Import {
        interface: "wasi:cli/terminal-stderr",
        add_to_linker: |l| cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, CallState::cli),
    },
];

/// The WASI I/O interfaces live on the store's resource table alone.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

fn table(state: &mut CallState) -> &mut ResourceTable {
    state.ctx().table
}

/// `wasi:io/poll` (where a module sleeps) is served by wasmtime-wasi on the resource
/// table, and notes each wait in the call's budget, so that the CPU budget does not charge
/// the module for the time it slept.
struct Polls;

impl HasData for Polls {
    type Data<'a> = Waits<'a>;
}

fn polls(state: &mut CallState) -> Waits<'_> {
    let (table, budget) = state.waits();
    Waits { table, budget }
}

struct Waits<'a> {
    table: &'a mut ResourceTable,
    budget: &'a mut CallBudget,
}

impl io::poll::Host for Waits<'_> {
    async fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let started = std::time::Instant::now();
        let ready = io::poll::Host::poll(&mut *self.table, pollables).await?;
        self.budget.waited(started.elapsed());
        Ok(ready)
    }
}

impl io::poll::HostPollable for Waits<'_> {
    async fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let started = std::time::Instant::now();
        io::poll::HostPollable::block(&mut *self.table, pollable).await?;
        self.budget.waited(started.elapsed());
        Ok(())
    }
    async fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        io::poll::HostPollable::ready(&mut *self.table, pollable).await
    }
    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        io::poll::HostPollable::drop(&mut *self.table, pollable)
    }
}

/// The WASI context of one call's store. Nothing is inherited: no environment, arguments,
/// preopens or network, and stdio is a sink. Clocks and randomness are the only things
/// it gives.
pub(crate) fn context(random: &RandomSource) -> WasiCtx {
    WasiCtxBuilder::new()
        .monotonic_clock(TokioClock { origin: tokio::time::Instant::now() })
        .secure_random(random.make())
        .insecure_random(random.make())
        .allow_ip_name_lookup(false)
        .allow_tcp(false)
        .allow_udp(false)
        .build()
}

/// The WASI monotonic clock, read from tokio's clock so that a module's notion of "now"
/// agrees with its sleeps (which wasmtime-wasi runs on tokio timers). Under tokio's paused
/// test clock, backoffs are then exact and take no real time.
struct TokioClock {
    origin: tokio::time::Instant,
}

impl HostMonotonicClock for TokioClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
