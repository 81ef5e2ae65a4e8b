//! `dependsOn` across a config file's services: every name must be a service of the file, and
//! the services must not depend on each other in a circle. Both are config errors, found before
//! anything starts, at the `dependsOn` entry that closes the circle or names nobody.

use std::collections::BTreeMap;

use super::ServiceSpec;
use super::locate::Segment;

/// What is wrong: the path of the `dependsOn` entry (`services[2].dependsOn[0]`) and a message.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct DependsError {
    pub(super) field: Vec<Segment>,
    pub(super) message: String,
}

fn at(service: usize, entry: usize, message: String) -> DependsError {
    DependsError {
        field: vec![
            Segment::Key("services".into()),
            Segment::Index(service),
            Segment::Key("dependsOn".into()),
            Segment::Index(entry),
        ],
        message,
    }
}

/// Checks the `dependsOn` of `services` (in file order).
pub(super) fn check(services: &[ServiceSpec]) -> Result<(), DependsError> {
    // Several services may share a name: a name stands for all of them.
    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in services.iter().enumerate() {
        if let Some(n) = &s.name {
            by_name.entry(n).or_default().push(i);
        }
    }
    for (i, s) in services.iter().enumerate() {
        for (j, dep) in s.depends_on.iter().enumerate() {
            if !by_name.contains_key(dep.as_str()) {
                return Err(at(i, j, format!("no service is named {dep:?}")));
            }
        }
    }
    // Every edge: service i's entry j names service k.
    let edges: Vec<Vec<(usize, usize)>> = services
        .iter()
        .map(|s| {
            s.depends_on
                .iter()
                .enumerate()
                .flat_map(|(j, d)| by_name[d.as_str()].iter().map(move |&k| (j, k)))
                .collect()
        })
        .collect();
    // Depth-first search; a service met again while on the path closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; services.len()];
    for start in 0..services.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // (service, next edge to follow)
        let mut stack = vec![(start, 0usize)];
        mark[start] = Mark::OnPath;
        while let Some(top) = stack.last_mut() {
            let (i, e) = *top;
            let Some(&(j, k)) = edges[i].get(e) else {
                mark[i] = Mark::Done;
                stack.pop();
                continue;
            };
            top.1 += 1;
            match mark[k] {
                Mark::New => {
                    mark[k] = Mark::OnPath;
                    stack.push((k, 0));
                }
                Mark::OnPath => {
                    let name = |s: usize| services[s].name.clone().unwrap_or_default();
                    let mut names: Vec<String> = stack
                        .iter()
                        .skip_while(|&&(s, _)| s != k)
                        .map(|&(s, _)| name(s))
                        .collect();
                    names.push(name(k));
                    return Err(at(
                        i,
                        j,
                        format!("dependency cycle: {}", names.join(" -> ")),
                    ));
                }
                Mark::Done => {}
            }
        }
    }
    Ok(())
}
