//! Property test: the registry state machine against a simple model.

use std::collections::BTreeMap;
use std::time::Duration;

use discovery::registry::{Authority, PeerRegistry, RegistryError, RegistrySettings};
use discovery::validate::CellInfo;
use proptest::prelude::*;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
enum Op {
    Register(u8),
    Heartbeat(u8, u8, bool),
    Deregister(u8, u8),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..6).prop_map(Op::Register),
        4 => (0u8..6, 0u8..3, any::<bool>()).prop_map(|(i, c, l)| Op::Heartbeat(i, c, l)),
        1 => (0u8..6, 0u8..3).prop_map(|(i, c)| Op::Deregister(i, c)),
        3 => (0u64..20_000).prop_map(Op::Advance),
    ]
}

fn info(i: u8) -> CellInfo {
    CellInfo {
        cell_id: format!("cell-{i}"),
        ip: "10.0.0.1".into(),
        port: 8000,
        consciousness_level: 0.0,
        services: vec!["s".into()],
        branch: "main".into(),
        cell_type: "cell".into(),
        hostname: String::new(),
    }
}

fn settings(guard: bool) -> RegistrySettings {
    RegistrySettings {
        ttl: TTL,
        startup_grace: Duration::ZERO,
        mass_eviction_share: if guard { 0.5 } else { 1.0 },
        mass_eviction_min_peers: if guard { 2 } else { usize::MAX },
        mass_eviction_hold: Duration::from_secs(5),
        history: 64,
        max_peers: 1000,
    }
}

/// Drives the registry as the reaper does: wake at every `next_wakeup` up to `target`.
fn advance(reg: &mut PeerRegistry, now: &mut Instant, target: Instant) -> Vec<String> {
    let mut evicted = Vec::new();
    loop {
        match reg.next_wakeup(*now) {
            Some(w) if w <= target => {
                *now = w.max(*now);
                let out = reg.reap(*now, 3);
                evicted.extend(out.evicted.iter().map(|s| s.to_string()));
                if !out.more && reg.next_wakeup(*now) == Some(*now) {
                    break;
                }
            }
            _ => break,
        }
    }
    *now = target;
    loop {
        let out = reg.reap(*now, 3);
        evicted.extend(out.evicted.iter().map(|s| s.to_string()));
        if !out.more {
            break;
        }
    }
    evicted
}

/// (incarnation, deadline, level)
type Model = BTreeMap<String, (u64, Instant, f64)>;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn registry_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let start = Instant::now();
        let mut now = start;
        let mut reg = PeerRegistry::new(settings(false), start, 1);
        let mut model = Model::new();
        let mut next_inc = 1u64;
        let mut revision = 0u64;
        for op in ops {
            match op {
                Op::Register(i) => {
                    let r = reg.register(&info(i), [0; 16], now, 0).unwrap();
                    prop_assert_eq!(r.incarnation, next_inc);
                    let old = model.insert(info(i).cell_id, (next_inc, now + TTL, 0.0));
                    prop_assert_eq!(r.replaced, old.is_some());
                    revision += if old.is_some() { 2 } else { 1 };
                    next_inc += 1;
                }
                Op::Heartbeat(i, choice, level_up) => {
                    let id = info(i).cell_id;
                    let level = if level_up { 1.0 } else { 0.0 };
                    let current = model.get(&id).map(|m| m.0);
                    let inc = match choice { 0 => None, 1 => current.or(Some(1)), _ => Some(current.unwrap_or(0) + 1000) };
                    let got = reg.heartbeat(&id, level, inc, Authority::Open, now, 0);
                    match model.get_mut(&id) {
                        None => prop_assert_eq!(got, Err(RegistryError::NotFound)),
                        Some(m) if inc.is_some_and(|x| x != m.0) => prop_assert_eq!(got, Err(RegistryError::StaleIncarnation)),
                        Some(m) => {
                            prop_assert_eq!(got.map(|a| a.incarnation), Ok(m.0));
                            m.1 = now + TTL;
                            if m.2 != level { revision += 1; m.2 = level; }
                        }
                    }
                }
                Op::Deregister(i, choice) => {
                    let id = info(i).cell_id;
                    let current = model.get(&id).map(|m| m.0);
                    let inc = match choice { 0 => None, 1 => current, _ => Some(current.unwrap_or(0) + 1000) };
                    let got = reg.deregister(&id, inc, Authority::Open, now);
                    match model.get(&id) {
                        None => prop_assert_eq!(got, Err(RegistryError::NotFound)),
                        Some(m) if inc.is_some_and(|x| x != m.0) => prop_assert_eq!(got, Err(RegistryError::StaleIncarnation)),
                        Some(_) => { prop_assert_eq!(got, Ok(())); model.remove(&id); revision += 1; }
                    }
                }
                Op::Advance(ms) => {
                    let target = now + Duration::from_millis(ms);
                    let mut evicted = advance(&mut reg, &mut now, target);
                    let mut expected: Vec<String> = model.iter().filter(|(_, m)| m.1 <= now).map(|(k, _)| k.clone()).collect();
                    model.retain(|_, m| m.1 > now);
                    evicted.sort();
                    expected.sort();
                    revision += expected.len() as u64;
                    prop_assert_eq!(evicted, expected);
                }
            }
            prop_assert_eq!(reg.len(), model.len());
            prop_assert_eq!(reg.revision(), revision);
            for (id, m) in &model {
                prop_assert_eq!(reg.lease(id), Some((m.0, m.1)));
            }
            let view = reg.view();
            let ids: Vec<String> = view.peers.iter().map(|p| p.cell_id.to_string()).collect();
            prop_assert_eq!(ids, model.keys().cloned().collect::<Vec<_>>());
        }
    }

    /// With the guard on, no silent peer outlives its deadline by more than one hold.
    #[test]
    fn guard_never_keeps_ghosts(ops in prop::collection::vec(op(), 1..80)) {
        let start = Instant::now();
        let mut now = start;
        let mut reg = PeerRegistry::new(settings(true), start, 1);
        let hold = Duration::from_secs(5);
        for op in ops {
            match op {
                Op::Register(i) => { reg.register(&info(i), [0; 16], now, 0).unwrap(); }
                Op::Heartbeat(i, _, _) => { let _ = reg.heartbeat(&info(i).cell_id, 0.0, None, Authority::Open, now, 0); }
                Op::Deregister(i, _) => { let _ = reg.deregister(&info(i).cell_id, None, Authority::Open, now); }
                Op::Advance(ms) => {
                    let target = now + Duration::from_millis(ms);
                    advance(&mut reg, &mut now, target);
                    for i in 0..6 {
                        if let Some((_, deadline)) = reg.lease(&info(i).cell_id) {
                            prop_assert!(deadline + hold > now, "ghost: deadline {:?} before now {:?} - hold", deadline - start, now - start);
                        }
                    }
                }
            }
        }
    }
}
