//! [`InstanceLimiter`]: the resource limits of one instance as a whole:
//! the memory cap applies to the sum of its linear memories (a component
//! links several core modules, each of which may define memories), table
//! elements are held to the same budget, and the counts of core instances,
//! tables and memories are bounded.

use wasmtime::ResourceLimiter;

use super::limits::SandboxLimits;

/// What a table element costs, for the table budget: a pointer.
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// Caps an instance's memories and tables as a whole, and remembers
/// whether the memory cap was hit, so that the trap that usually follows
/// (an allocator abort) is reported as what it is.
#[derive(Debug)]
pub(crate) struct InstanceLimiter {
    /// The cap on the sum of all linear memories, in bytes (and on the sum
    /// of all table elements times [`TABLE_ELEMENT_BYTES`]).
    limit_bytes: usize,
    max_instances: usize,
    max_tables: usize,
    max_memories: usize,
    /// Bytes of all linear memories together.
    memory_bytes: usize,
    /// Elements of all tables together.
    table_elements: usize,
    /// Whether a memory growth was refused by the cap during this call.
    pub(crate) hit: bool,
    /// The largest the sum of the memories has been.
    pub(crate) peak_bytes: usize,
}

impl InstanceLimiter {
    /// A limiter for one fresh instance under `limits`.
    pub(crate) fn new(limits: &SandboxLimits) -> Self {
        Self {
            limit_bytes: limits.memory_limit_bytes,
            max_instances: limits.max_instances,
            max_tables: limits.max_tables,
            max_memories: limits.max_memories,
            memory_bytes: 0,
            table_elements: 0,
            hit: false,
            peak_bytes: 0,
        }
    }
}

impl ResourceLimiter for InstanceLimiter {
    /// Also called when a memory is created (`current` 0): every memory of
    /// the instance counts.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.memory_bytes - current.min(self.memory_bytes)).saturating_add(desired);
        if total > self.limit_bytes {
            self.hit = true;
            return Ok(false);
        }
        self.memory_bytes = total;
        self.peak_bytes = self.peak_bytes.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total =
            (self.table_elements - current.min(self.table_elements)).saturating_add(desired);
        if total.saturating_mul(TABLE_ELEMENT_BYTES) > self.limit_bytes {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_tables
    }

    fn memories(&self) -> usize {
        self.max_memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instantiate(wat: &str, limits: &SandboxLimits) -> (wasmtime::Result<()>, InstanceLimiter) {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, wat).expect("a valid module");
        let mut store = wasmtime::Store::new(&engine, InstanceLimiter::new(limits));
        store.limiter(|limiter| limiter);
        let made = wasmtime::Instance::new(&mut store, &module, &[]).map(drop);
        (made, store.into_data())
    }

    /// Finding: the memory cap applied to each linear memory, so two
    /// memories of 10 MiB passed a 16 MiB cap. It applies to their sum.
    #[test]
    fn the_memory_cap_applies_to_the_sum_of_an_instances_memories() {
        let limits = SandboxLimits::new(SandboxLimits::DEFAULT_CALL_TIMEOUT, 16);
        // 160 pages of 64 KiB: 10 MiB each.
        let (made, limiter) = instantiate("(module (memory 160) (memory 160))", &limits);
        assert!(made.is_err(), "20 MiB of memories passed a 16 MiB cap");
        assert!(limiter.hit);
        let (made, limiter) = instantiate("(module (memory 120) (memory 120))", &limits);
        assert!(made.is_ok(), "15 MiB of memories refused: {made:?}");
        assert_eq!(limiter.peak_bytes, 240 << 16);
    }

    /// Finding: the counts of memories and tables were unbounded.
    #[test]
    fn the_counts_of_memories_and_tables_are_bounded() {
        let limits = SandboxLimits {
            max_memories: 2,
            max_tables: 1,
            ..SandboxLimits::default()
        };
        let (made, _) = instantiate("(module (memory 1) (memory 1) (memory 1))", &limits);
        let error = format!("{:#}", made.expect_err("3 memories passed a bound of 2"));
        assert!(error.contains("memor"), "{error}");
        let (made, _) = instantiate("(module (table 1 funcref) (table 1 funcref))", &limits);
        assert!(made.is_err(), "2 tables passed a bound of 1");
        let (made, _) = instantiate("(module (memory 1) (memory 1) (table 1 funcref))", &limits);
        assert!(made.is_ok(), "{made:?}");
    }
}
