//! A compact dependency graph over dense step indices: levels, cycles, longest path, Mermaid and DOT.
//!
//! Nodes are `u32` indices; edges live in compressed sparse row (CSR) arrays,
//! so a 1,000,000-step workflow costs a few flat vectors, not a vector per
//! step. Every algorithm here is iterative: a million-long chain cannot
//! overflow the stack.

use std::fmt::Write as _;

/// Dependencies in compressed sparse row form: node `i` depends on `deps(i)`.
///
/// Edges may name nodes pushed later (forward references); every edge must be
/// `< len()` by the time [`DepGraph::levels`], [`DepGraph::find_cycle`] or
/// [`DepGraph::dependents`] is called. Edges that are out of range then are
/// ignored (callers validate names before building the graph).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepGraph {
    offsets: Vec<u32>,
    edges: Vec<u32>,
}

impl Default for DepGraph {
    fn default() -> Self {
        Self::new()
    }
}

/// The nodes of one dependency cycle, in order: `0[k]` depends on `0[k+1]`,
/// and the last depends on the first. A self-dependency is a cycle of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Vec<u32>);

/// Execution levels: level 0 holds the nodes without dependencies; every other
/// node sits one level after its latest dependency. Within a level, nodes are
/// in ascending index order (definition order), so the result is deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels {
    order: Vec<u32>,
    starts: Vec<u32>,
}

impl DepGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self {
            offsets: vec![0],
            edges: Vec::new(),
        }
    }

    /// An empty graph with room for `nodes` nodes and `edges` edges.
    pub fn with_capacity(nodes: usize, edges: usize) -> Self {
        let mut offsets = Vec::with_capacity(nodes + 1);
        offsets.push(0);
        Self {
            offsets,
            edges: Vec::with_capacity(edges),
        }
    }

    /// Adds a node with its dependencies; returns its index.
    pub fn push_node(&mut self, deps: impl IntoIterator<Item = u32>) -> u32 {
        let index = self.len() as u32;
        self.edges.extend(deps);
        self.offsets.push(self.edges.len() as u32);
        index
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether the graph has no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// The dependencies of `node` (empty when out of range).
    pub fn deps(&self, node: u32) -> &[u32] {
        let i = node as usize;
        if i >= self.len() {
            return &[];
        }
        &self.edges[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    fn valid_deps(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        let n = self.len() as u32;
        self.deps(node).iter().copied().filter(move |&d| d < n)
    }

    /// The reversed graph: `dependents().deps(i)` lists the nodes that depend
    /// on `i`, in ascending order. O(nodes + edges), by counting sort.
    pub fn dependents(&self) -> DepGraph {
        let n = self.len();
        let mut counts = vec![0u32; n + 1];
        for node in 0..n as u32 {
            for d in self.valid_deps(node) {
                counts[d as usize + 1] += 1;
            }
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let offsets = counts.clone();
        let mut fill = counts;
        let mut edges = vec![0u32; offsets[n] as usize];
        for node in 0..n as u32 {
            for d in self.valid_deps(node) {
                let slot = &mut fill[d as usize];
                edges[*slot as usize] = node;
                *slot += 1;
            }
        }
        DepGraph { offsets, edges }
    }

    /// Kahn's algorithm, level by level.
    ///
    /// # Errors
    /// A [`Cycle`] when the graph is not acyclic.
    pub fn levels(&self) -> Result<Levels, Cycle> {
        let n = self.len();
        let rev = self.dependents();
        let mut remaining: Vec<u32> = (0..n as u32)
            .map(|i| self.valid_deps(i).count() as u32)
            .collect();
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let mut starts: Vec<u32> = Vec::new();
        order.extend((0..n as u32).filter(|&i| remaining[i as usize] == 0));
        let mut level_start = 0usize;
        while level_start < order.len() {
            starts.push(level_start as u32);
            let level_end = order.len();
            for k in level_start..level_end {
                let node = order[k];
                for &dep in rev.deps(node) {
                    let r = &mut remaining[dep as usize];
                    *r -= 1;
                    if *r == 0 {
                        order.push(dep);
                    }
                }
            }
            order[level_end..].sort_unstable();
            level_start = level_end;
        }
        if order.len() < n {
            return Err(self.find_cycle().unwrap_or(Cycle(Vec::new())));
        }
        starts.push(order.len() as u32);
        Ok(Levels { order, starts })
    }

    /// One cycle, if any: an iterative depth-first search from the lowest
    /// index, following dependencies; deterministic.
    pub fn find_cycle(&self) -> Option<Cycle> {
        const WHITE: u8 = 0;
        const GREY: u8 = 1;
        const BLACK: u8 = 2;
        let n = self.len();
        let mut color = vec![WHITE; n];
        // Stack of (node, next dependency position).
        let mut stack: Vec<(u32, u32)> = Vec::new();
        for root in 0..n as u32 {
            if color[root as usize] != WHITE {
                continue;
            }
            color[root as usize] = GREY;
            stack.push((root, 0));
            while let Some(&mut (node, ref mut pos)) = stack.last_mut() {
                let deps = self.deps(node);
                if (*pos as usize) < deps.len() {
                    let d = deps[*pos as usize];
                    *pos += 1;
                    if d as usize >= n {
                        continue;
                    }
                    match color[d as usize] {
                        WHITE => {
                            color[d as usize] = GREY;
                            stack.push((d, 0));
                        }
                        GREY => {
                            let from = stack.iter().position(|&(x, _)| x == d).unwrap_or(0);
                            return Some(Cycle(stack[from..].iter().map(|&(x, _)| x).collect()));
                        }
                        _ => {}
                    }
                } else {
                    color[node as usize] = BLACK;
                    stack.pop();
                }
            }
        }
        None
    }

    /// One longest chain of dependencies, source first (ties broken by lowest index).
    pub fn longest_path(&self, levels: &Levels) -> Vec<u32> {
        let Some(last) = levels.iter().last() else {
            return Vec::new();
        };
        let level_of = levels.level_of();
        let mut path = Vec::with_capacity(levels.len());
        let mut node = last[0];
        path.push(node);
        while level_of[node as usize] > 0 {
            let want = level_of[node as usize] - 1;
            // A node at level L has a dependency at level L-1 by construction.
            match self
                .valid_deps(node)
                .filter(|&d| level_of[d as usize] == want)
                .min()
            {
                Some(d) => {
                    node = d;
                    path.push(d);
                }
                None => break,
            }
        }
        path.reverse();
        path
    }
}

impl Levels {
    /// Number of levels.
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Whether there are no levels (an empty graph).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The nodes of level `i`.
    pub fn level(&self, i: usize) -> &[u32] {
        &self.order[self.starts[i] as usize..self.starts[i + 1] as usize]
    }

    /// The levels in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u32]> {
        (0..self.len()).map(move |i| self.level(i))
    }

    /// All nodes in level order (a topological order).
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// The level of every node, by node index.
    pub fn level_of(&self) -> Vec<u32> {
        let mut out = vec![0u32; self.order.len()];
        for (l, level) in self.iter().enumerate() {
            for &node in level {
                out[node as usize] = l as u32;
            }
        }
        out
    }
}

fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn dot_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders the graph as a Mermaid `flowchart TD`: nodes `n0`, `n1`, ... with
/// the name and label as text, and one `nDEP --> nNODE` line per dependency.
pub fn to_mermaid(graph: &DepGraph, names: &[&str], labels: &[&str]) -> String {
    let mut out = String::from("flowchart TD\n");
    for i in 0..graph.len() {
        let name = names.get(i).copied().unwrap_or("");
        let label = labels.get(i).copied().unwrap_or("");
        let _ = writeln!(
            out,
            "    n{i}[\"{}<br/>{}\"]",
            mermaid_text(name),
            mermaid_text(label)
        );
    }
    for i in 0..graph.len() as u32 {
        for &d in graph.deps(i) {
            let _ = writeln!(out, "    n{d} --> n{i}");
        }
    }
    out
}

/// Renders the graph as a Graphviz `digraph`, edges pointing from a dependency
/// to its dependent.
pub fn to_dot(title: &str, graph: &DepGraph, names: &[&str], labels: &[&str]) -> String {
    let mut out = format!(
        "digraph {} {{\n    rankdir=LR;\n    node [shape=box];\n",
        dot_string(title)
    );
    for i in 0..graph.len() {
        let name = names.get(i).copied().unwrap_or("");
        let label = labels.get(i).copied().unwrap_or("");
        let _ = writeln!(
            out,
            "    {} [label={}];",
            dot_string(name),
            dot_string(&format!("{name}\n{label}"))
        );
    }
    for i in 0..graph.len() as u32 {
        for &d in graph.deps(i) {
            let from = names.get(d as usize).copied().unwrap_or("");
            let to = names.get(i as usize).copied().unwrap_or("");
            let _ = writeln!(out, "    {} -> {};", dot_string(from), dot_string(to));
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn graph(deps: &[&[u32]]) -> DepGraph {
        let mut g = DepGraph::new();
        for d in deps {
            g.push_node(d.iter().copied());
        }
        g
    }

    #[test]
    fn diamond_levels() {
        let g = graph(&[&[], &[0], &[0], &[1, 2]]);
        let levels = g.levels().expect("acyclic");
        let got: Vec<Vec<u32>> = levels.iter().map(<[u32]>::to_vec).collect();
        assert_eq!(got, vec![vec![0], vec![1, 2], vec![3]]);
        assert_eq!(g.longest_path(&levels), vec![0, 1, 3]);
        assert_eq!(g.dependents().deps(0), &[1, 2]);
    }

    #[test]
    fn a_million_long_chain_needs_no_recursion() {
        let mut g = DepGraph::with_capacity(1_000_000, 1_000_000);
        g.push_node([]);
        for i in 1..1_000_000u32 {
            g.push_node([i - 1]);
        }
        assert!(g.find_cycle().is_none());
        let levels = g.levels().expect("acyclic");
        assert_eq!(levels.len(), 1_000_000);
        assert_eq!(g.longest_path(&levels).len(), 1_000_000);
        // Close the chain into one big cycle.
        let mut c = DepGraph::new();
        c.push_node([999_999]);
        for i in 1..1_000_000u32 {
            c.push_node([i - 1]);
        }
        let cycle = c.find_cycle().expect("cycle");
        assert_eq!(cycle.0.len(), 1_000_000);
    }

    #[test]
    fn self_loop_and_three_cycle() {
        assert_eq!(graph(&[&[0]]).find_cycle(), Some(Cycle(vec![0])));
        // a depends on c, b on a, c on b.
        let g = graph(&[&[2], &[0], &[1]]);
        assert_eq!(g.find_cycle(), Some(Cycle(vec![0, 2, 1])));
        assert!(g.levels().is_err());
    }

    #[test]
    fn escaping() {
        let g = graph(&[&[], &[0]]);
        let m = to_mermaid(&g, &["a\"b", "c#d"], &["core.noop", "x<y>"]);
        assert!(m.contains("n0[\"a#quot;b<br/>core.noop\"]"), "{m}");
        assert!(m.contains("c#35;d<br/>x#lt;y#gt;"), "{m}");
        assert!(m.contains("n0 --> n1"));
        let d = to_dot("w\"1", &g, &["a\"b", "back\\slash"], &["l1", "l2"]);
        assert!(d.starts_with("digraph \"w\\\"1\" {"), "{d}");
        assert!(d.contains("\"a\\\"b\" -> \"back\\\\slash\";"), "{d}");
        assert!(d.contains("label=\"a\\\"b\\nl1\""), "{d}");
    }

    /// The reference check: repeatedly remove nodes whose dependencies are all removed.
    fn naive_acyclic(deps: &[Vec<u32>]) -> bool {
        let n = deps.len();
        let mut removed = vec![false; n];
        loop {
            let mut progress = false;
            for i in 0..n {
                if !removed[i] && deps[i].iter().all(|&d| removed[d as usize]) {
                    removed[i] = true;
                    progress = true;
                }
            }
            if !progress {
                return removed.iter().all(|r| *r);
            }
        }
    }

    fn random_graph() -> impl Strategy<Value = Vec<Vec<u32>>> {
        (1usize..60).prop_flat_map(|n| {
            proptest::collection::vec(proptest::collection::vec((0..n as u32, 0u8..10), 0..4), n)
                .prop_map(move |nodes| {
                    nodes
                        .into_iter()
                        .enumerate()
                        .map(|(i, ds)| {
                            // Mostly backward edges (a DAG), sometimes forward ones (cycles).
                            ds.into_iter()
                                .filter_map(|(d, roll)| {
                                    if roll == 0 || (d as usize) < i {
                                        Some(d)
                                    } else {
                                        None
                                    }
                                })
                                .collect()
                        })
                        .collect()
                })
        })
    }

    proptest! {
        #[test]
        fn graph_laws(deps in random_graph()) {
            let g = graph(&deps.iter().map(Vec::as_slice).collect::<Vec<_>>());
            let acyclic = naive_acyclic(&deps);
            let cycle = g.find_cycle();
            prop_assert_eq!(cycle.is_none(), acyclic);
            prop_assert_eq!(g.levels().is_ok(), acyclic);
            if let Some(Cycle(c)) = cycle {
                prop_assert!(!c.is_empty());
                let mut seen = std::collections::HashSet::new();
                for (k, &node) in c.iter().enumerate() {
                    prop_assert!(seen.insert(node), "repeated node");
                    let next = c[(k + 1) % c.len()];
                    prop_assert!(deps[node as usize].contains(&next), "{} does not depend on {}", node, next);
                }
            }
            if let Ok(levels) = g.levels() {
                let level_of = levels.level_of();
                let mut count = 0;
                for level in levels.iter() {
                    prop_assert!(level.windows(2).all(|w| w[0] < w[1]));
                    count += level.len();
                }
                prop_assert_eq!(count, deps.len());
                for (i, ds) in deps.iter().enumerate() {
                    for &d in ds {
                        prop_assert!(level_of[d as usize] < level_of[i]);
                    }
                }
                let path = g.longest_path(&levels);
                prop_assert_eq!(path.len(), levels.len());
                for w in path.windows(2) {
                    prop_assert!(deps[w[1] as usize].contains(&w[0]));
                }
            }
        }
    }
}
