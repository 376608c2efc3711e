//! Which of the kinds hostguard reads beyond the built-in workloads this cluster serves: the AI
//! tools' own resources (`detect::adapters::resources`), other controllers' pod-template kinds
//! (`workload::kinds::all`, the built-in table and the platform team's additions) and the objects adapters follow references to
//! (`detect::adapters::related_resources`). Their CRDs belong to their projects and are usually
//! not all installed: a kind that is not served is simply not audited, never an error.
//!
//! Discovery is asked before every audit, so a CRD installed after hostguard started is covered
//! by the next audit without a restart. It costs one request for the API group list (`/apis`)
//! and one per served group version that holds a kind of interest.
//!
//! For each kind the version is chosen in this order: the group's preferred version when
//! hostguard reads it; else the first version hostguard reads (in its own order) that the
//! cluster serves; else the preferred version that the cluster serves, whose objects the engine
//! then reports as not understood (a warning in the audit), never as compliant silently.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList;
use kube::Client;
use kube::api::{ApiResource, GroupVersionKind};

use crate::detect::adapters::{self, KindRef};
use crate::workload::kinds;

/// What hostguard looks for, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Judged by the engine like a workload: an adapter kind or a pod-template kind.
    Judged,
    /// Looked up by the adapters (an Envoy Gateway Backend), not judged itself.
    Related,
}

/// Every kind of interest beyond the built-in workloads, with its role.
pub fn wanted() -> Vec<(KindRef, Role)> {
    let mut out: Vec<(KindRef, Role)> = adapters::resources().map(|k| (k, Role::Judged)).collect();
    out.extend(kinds::all().map(|k| {
        (
            KindRef {
                group: k.group,
                kind: k.kind,
                plural: k.plural,
                versions: k.versions,
            },
            Role::Judged,
        )
    }));
    out.extend(adapters::related_resources().map(|k| (k, Role::Related)));
    out
}

/// The kinds of interest this cluster serves, at the version chosen for each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Served {
    /// Judged kinds: listed by the audit.
    pub judged: Vec<ApiResource>,
    /// Related kinds: listed by the audit so that adapters' lookups are answered.
    pub related: Vec<ApiResource>,
    /// `group/version Kind` of the kinds served only in versions hostguard does not read.
    pub not_understood: Vec<String>,
}

impl Served {
    /// The served kinds adapters look up by reference (`detect::adapters::related_kinds`): the
    /// related kinds, and the judged kinds an adapter also follows (an `AIServiceBackend`, which
    /// an `AIGatewayRoute` names). What the webhook watches and the audit lists first.
    pub fn looked_up(&self) -> Vec<ApiResource> {
        let looked_up: BTreeSet<(&str, &str)> = adapters::related_kinds().collect();
        self.related
            .iter()
            .chain(&self.judged)
            .filter(|r| looked_up.contains(&(r.group.as_str(), r.kind.as_str())))
            .cloned()
            .collect()
    }

    /// `group/version Kind` of every kind found, for the log.
    pub fn names(&self) -> Vec<String> {
        self.judged
            .iter()
            .chain(&self.related)
            .map(|r| format!("{} {}", r.api_version, r.kind))
            .collect()
    }
}

/// What discovery found: per served group, its versions (preferred first when it names one) and,
/// per group version asked, the resource names it serves.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub groups: BTreeMap<String, GroupVersions>,
    /// By `group/version`: the resource names served there (subresources left out).
    pub resources: BTreeMap<String, BTreeSet<String>>,
}

/// The versions the cluster serves of one group.
#[derive(Debug, Clone, Default)]
pub struct GroupVersions {
    pub versions: Vec<String>,
    pub preferred: Option<String>,
}

impl Found {
    /// The groups of interest in an API group list.
    pub fn from_group_list(list: &APIGroupList, wanted: &[(KindRef, Role)]) -> Found {
        let interesting: BTreeSet<&str> = wanted.iter().map(|(k, _)| k.group).collect();
        let mut found = Found::default();
        for g in &list.groups {
            if !interesting.contains(g.name.as_str()) {
                continue;
            }
            found.groups.insert(
                g.name.clone(),
                GroupVersions {
                    versions: g.versions.iter().map(|v| v.version.clone()).collect(),
                    preferred: g.preferred_version.as_ref().map(|v| v.version.clone()),
                },
            );
        }
        found
    }

    /// The group versions whose resource lists are needed to choose: for each kind of interest
    /// in a served group, the versions it could be chosen at.
    pub fn versions_to_ask(&self, wanted: &[(KindRef, Role)]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for (k, _) in wanted {
            let Some(g) = self.groups.get(k.group) else {
                continue;
            };
            for v in &g.versions {
                if k.versions.contains(&v.as_str()) || g.preferred.as_deref() == Some(v) {
                    out.insert(format!("{}/{v}", k.group));
                }
            }
        }
        out
    }

    fn serves(&self, group: &str, version: &str, plural: &str) -> bool {
        self.resources
            .get(&format!("{group}/{version}"))
            .is_some_and(|r| r.contains(plural))
    }
}

/// Chooses a version for each kind of interest that is served (see the module documentation).
pub fn choose(found: &Found, wanted: &[(KindRef, Role)]) -> Served {
    let mut served = Served::default();
    for (k, role) in wanted {
        let Some(g) = found.groups.get(k.group) else {
            continue;
        };
        let preferred = g
            .preferred
            .as_deref()
            .filter(|p| found.serves(k.group, p, k.plural));
        let read = preferred.filter(|p| k.versions.contains(p)).or_else(|| {
            k.versions
                .iter()
                .copied()
                .find(|v| g.versions.iter().any(|s| s == v) && found.serves(k.group, v, k.plural))
        });
        let version = match (read, preferred) {
            (Some(v), _) => v,
            (None, Some(p)) => {
                served
                    .not_understood
                    .push(format!("{}/{p} {}", k.group, k.kind));
                p
            }
            (None, None) => continue,
        };
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(k.group, version, k.kind),
            k.plural,
        );
        match role {
            Role::Judged => served.judged.push(resource),
            Role::Related => served.related.push(resource),
        }
    }
    served
}

/// Asks the API server which kinds of interest it serves. A group version that vanished between
/// the two requests (404) is left out; any other failure is an error, and the caller retries.
pub async fn discover(client: &Client) -> Result<Served, kube::Error> {
    let wanted = wanted();
    let list = client.list_api_groups().await?;
    let mut found = Found::from_group_list(&list, &wanted);
    for gv in found.versions_to_ask(&wanted) {
        match client.list_api_group_resources(&gv).await {
            Ok(resources) => {
                let names = resources
                    .resources
                    .into_iter()
                    .map(|r| r.name)
                    .filter(|n| !n.contains('/'))
                    .collect();
                found.resources.insert(gv, names);
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(choose(&found, &wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(groups: &[(&str, &[&str], Option<&str>)], resources: &[(&str, &[&str])]) -> Found {
        Found {
            groups: groups
                .iter()
                .map(|(g, vs, p)| {
                    (
                        g.to_string(),
                        GroupVersions {
                            versions: vs.iter().map(|v| v.to_string()).collect(),
                            preferred: p.map(String::from),
                        },
                    )
                })
                .collect(),
            resources: resources
                .iter()
                .map(|(gv, rs)| (gv.to_string(), rs.iter().map(|r| r.to_string()).collect()))
                .collect(),
        }
    }

    fn versions_of(served: &Served, kind: &str) -> Vec<String> {
        served
            .judged
            .iter()
            .chain(&served.related)
            .filter(|r| r.kind == kind)
            .map(|r| r.api_version.clone())
            .collect()
    }

    #[test]
    fn nothing_served_means_nothing_to_audit() {
        assert_eq!(choose(&Found::default(), &wanted()), Served::default());
    }

    #[test]
    fn the_preferred_version_is_taken_when_hostguard_reads_it() {
        let f = found(
            &[("kagent.dev", &["v1alpha2", "v1alpha1"], Some("v1alpha2"))],
            &[
                ("kagent.dev/v1alpha2", &["modelconfigs", "agents"]),
                ("kagent.dev/v1alpha1", &["modelconfigs", "agents"]),
            ],
        );
        let s = choose(&f, &wanted());
        assert_eq!(versions_of(&s, "ModelConfig"), ["kagent.dev/v1alpha2"]);
        assert_eq!(versions_of(&s, "Agent"), ["kagent.dev/v1alpha2"]);
        // ModelProviderConfig is not served at all here.
        assert!(versions_of(&s, "ModelProviderConfig").is_empty());
        assert!(s.not_understood.is_empty());
    }

    #[test]
    fn a_preferred_version_hostguard_does_not_read_gives_way_to_one_it_reads() {
        // A newer kagent whose preferred version hostguard has not learnt yet.
        let f = found(
            &[("kagent.dev", &["v1beta1", "v1alpha2"], Some("v1beta1"))],
            &[
                ("kagent.dev/v1beta1", &["modelconfigs"]),
                ("kagent.dev/v1alpha2", &["modelconfigs"]),
            ],
        );
        let s = choose(&f, &wanted());
        assert_eq!(versions_of(&s, "ModelConfig"), ["kagent.dev/v1alpha2"]);
        assert!(s.not_understood.is_empty());
    }

    #[test]
    fn a_kind_served_only_in_an_unknown_version_is_audited_there_and_said() {
        let f = found(
            &[("core.k8sgpt.ai", &["v2"], Some("v2"))],
            &[("core.k8sgpt.ai/v2", &["k8sgpts"])],
        );
        let s = choose(&f, &wanted());
        assert_eq!(versions_of(&s, "K8sGPT"), ["core.k8sgpt.ai/v2"]);
        assert_eq!(s.not_understood, ["core.k8sgpt.ai/v2 K8sGPT"]);
    }

    #[test]
    fn a_group_served_without_the_kind_gives_nothing() {
        // Knative Eventing shares nothing with Serving; a serving group without services.
        let f = found(
            &[("serving.knative.dev", &["v1"], Some("v1"))],
            &[("serving.knative.dev/v1", &["routes"])],
        );
        let s = choose(&f, &wanted());
        assert!(versions_of(&s, "Service").is_empty(), "{s:?}");
        assert!(versions_of(&s, "Configuration").is_empty());
    }

    #[test]
    fn related_kinds_are_kept_apart_from_judged_ones() {
        let f = found(
            &[
                ("gateway.envoyproxy.io", &["v1alpha1"], Some("v1alpha1")),
                ("gateway.networking.k8s.io", &["v1", "v1alpha3"], Some("v1")),
                ("aigateway.envoyproxy.io", &["v1alpha1"], Some("v1alpha1")),
            ],
            &[
                (
                    "gateway.envoyproxy.io/v1alpha1",
                    &["backends", "envoyproxies"],
                ),
                (
                    "gateway.networking.k8s.io/v1",
                    &["backendtlspolicies", "gateways"],
                ),
                ("aigateway.envoyproxy.io/v1alpha1", &["aiservicebackends"]),
            ],
        );
        let s = choose(&f, &wanted());
        let related: Vec<&str> = s.related.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(related, ["Backend", "BackendTLSPolicy"]);
        assert_eq!(s.related[1].api_version, "gateway.networking.k8s.io/v1");
        assert_eq!(s.related[0].plural, "backends");
        let judged: Vec<&str> = s.judged.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(judged, ["AIServiceBackend"]);
    }

    #[test]
    fn only_the_versions_that_could_be_chosen_are_asked() {
        let f = found(&[("ray.io", &["v1", "v1alpha1", "v2"], Some("v1"))], &[]);
        let asked = f.versions_to_ask(&wanted());
        assert_eq!(
            asked.into_iter().collect::<Vec<_>>(),
            ["ray.io/v1", "ray.io/v1alpha1"]
        );
    }
}
