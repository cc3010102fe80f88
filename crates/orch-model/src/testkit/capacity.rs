//! Checks of resource-aware claims: a claimer gets only what fits what it
//! has free.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::enums::ResourceType;

const CPU: ResourceType = ResourceType::Cpu;
const MEM: ResourceType = ResourceType::Memory;
const GPU: ResourceType = ResourceType::Gpu;

/// Tasks with needs, in claim order: `big` (8 cores, high priority), then
/// `a` (2 cores), `b` (2 cores), `c` (1 core, 4 GiB), `g` (1 gpu), `n`
/// (nothing).
fn sized(id: RunId) -> NewRun {
    let task = |name: &str, priority, needs: ResourceAmounts| NewTask {
        name: name.into(),
        deps: Vec::new(),
        priority,
        needs,
        spec: None,
    };
    let none = ResourceAmounts::default;
    NewRun {
        id,
        workflow: "sized".into(),
        definition: r#"{"name":"sized"}"#.to_owned(),
        params: Map::new(),
        tasks: vec![
            task("big", TaskPriority::High, none().with(CPU, 8.0)),
            task("a", TaskPriority::Normal, none().with(CPU, 2.0)),
            task("b", TaskPriority::Normal, none().with(CPU, 2.0)),
            task(
                "c",
                TaskPriority::Normal,
                none().with(CPU, 1.0).with(MEM, 4.0),
            ),
            task("g", TaskPriority::Normal, none().with(GPU, 1.0)),
            task("n", TaskPriority::Normal, none()),
        ],
        parent: None,
        owner: None,
        max_parallel: None,
    }
}

fn names(claims: &[Claim]) -> Vec<&str> {
    claims.iter().map(|c| c.name.as_str()).collect()
}

/// The sum of `kind` over what `claims` need.
fn used(claims: &[Claim], kind: ResourceType) -> f64 {
    claims.iter().map(|c| c.needs.get(kind)).sum()
}

/// Claims hand out, in claim order, only tasks whose needs fit what the
/// claimer has left free (greedy); a task too big for one claimer stays
/// ready for a bigger one; claims carry the task's needs. A store that
/// cannot compare needs refuses a claim with a limited capacity.
pub async fn claims_fit_the_claimers_capacity(store: &dyn Store) {
    if !store.capabilities().claims {
        return claims_are_unsupported(store).await;
    }
    let id = RunId::new();
    store.create_run(sized(id), t0()).await.expect("create_run");
    let small_free = ResourceAmounts::default().with(CPU, 3.0).with(MEM, 4.0);
    let small = ClaimRequest::new("small", 10, LEASE).fitting(small_free.clone());
    let fits = store.claims().is_some_and(|c| c.fits_capacity());
    if !fits {
        match store.claim(&small, at(1)).await {
            Err(OrchestrationError::Unsupported { message }) => assert!(
                message.contains(store.backend()),
                "the Unsupported error names the backend: {message}"
            ),
            other => panic!(
                "a store whose claims do not fit capacities must refuse a limited claim with Unsupported, not {other:?}"
            ),
        }
        return;
    }
    let got = store.claim(&small, at(1)).await.expect("claim small");
    assert_eq!(
        names(&got),
        ["a", "c", "g", "n"],
        "greedy in claim order: `big` never fits 3 cores, `b` no longer fits after `a`; gpu is not limited for this claimer"
    );
    assert!(used(&got, CPU) <= 3.0 && used(&got, MEM) <= 4.0);
    assert_eq!(
        got[1].needs,
        ResourceAmounts::default().with(CPU, 1.0).with(MEM, 4.0)
    );
    let medium =
        ClaimRequest::new("medium", 10, LEASE).fitting(ResourceAmounts::default().with(CPU, 4.0));
    let got = store.claim(&medium, at(2)).await.expect("claim medium");
    assert_eq!(names(&got), ["b"], "`big` is still too big; `b` fits");
    let st = statuses(store, id).await;
    assert_eq!(
        st[0],
        TaskStatus::Ready,
        "a task nobody could hold stays ready"
    );
    let none =
        ClaimRequest::new("tiny", 10, LEASE).fitting(ResourceAmounts::default().with(CPU, 0.5));
    assert!(
        store
            .claim(&none, at(3))
            .await
            .expect("claim tiny")
            .is_empty(),
        "nothing fits half a core"
    );
    let large = ClaimRequest::new("large", 10, LEASE)
        .fitting(ResourceAmounts::default().with(CPU, 16.0).with(GPU, 0.0));
    let got = store.claim(&large, at(4)).await.expect("claim large");
    assert_eq!(names(&got), ["big"], "the big task waited for a big worker");
    assert_eq!(got[0].attempt, 1, "passing a task over is no attempt");
    // `max` still bounds a claim; a kind with nothing free is never handed out.
    let id2 = RunId::new();
    store
        .create_run(sized(id2), t0())
        .await
        .expect("create_run");
    let two = ClaimRequest::new("two", 2, LEASE)
        .fitting(ResourceAmounts::default().with(CPU, 100.0).with(GPU, 0.0));
    assert_eq!(
        names(&store.claim(&two, at(5)).await.expect("claim two")),
        ["big", "a"]
    );
    let no_gpu =
        ClaimRequest::new("cpu-only", 10, LEASE).fitting(ResourceAmounts::default().with(GPU, 0.0));
    assert_eq!(
        names(&store.claim(&no_gpu, at(6)).await.expect("claim cpu-only")),
        ["b", "c", "n"],
        "a claimer without gpus never gets the gpu task"
    );
}
