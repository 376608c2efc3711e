//! The Kubernetes permissions hostguard needs in a cluster, in one place: the chart's
//! ClusterRole and Role are written from this table, and a test keeps it free of Secrets and
//! wildcards. The PolicyReport permissions ([`report_rule`]) are granted by a ClusterRole of
//! their own, only when the chart turns reports on, for the one API it chose.

/// Where a rule is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A ClusterRole bound cluster-wide.
    Cluster,
    /// A Role in hostguard's own namespace (the Lease namespace).
    OwnNamespace,
}

/// One RBAC rule: an API group, resources in it, verbs, and why hostguard needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub scope: Scope,
    /// API group (`""` is the core group).
    pub api_group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub why: &'static str,
}

/// Every permission hostguard uses, and nothing else. Secrets are never read: an endpoint that
/// lives in a Secret is `unresolved` by design.
pub const RULES: &[Rule] = &[
    Rule {
        scope: Scope::Cluster,
        api_group: "hostguard.dev",
        resources: &["hostingpolicies", "aiworkloads"],
        verbs: &["get", "list", "watch"],
        why: "the policies in force and the declared AI workloads, cached by watches",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "hostguard.dev",
        resources: &["hostingpolicies/status", "aiworkloads/status"],
        // Status is written by server-side apply, which the API server authorizes as `patch`;
        // `update` (a full replace) is what issue 4 names and stays granted so that the chart
        // and this table agree.
        verbs: &["update", "patch"],
        why: "audit results: Ready/Compliant conditions, violation counts, matched workloads",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "",
        resources: &["namespaces"],
        verbs: &["get", "list", "watch"],
        why: "namespace labels for policy namespaceSelectors (metadata-only watch)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "",
        resources: &["nodes"],
        verbs: &["get", "list", "watch"],
        why: "cluster identity from spec.providerID and node labels",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "",
        resources: &["configmaps"],
        verbs: &["get", "list", "watch"],
        why: "endpoint values referenced by workloads: fetched on demand, kept fresh by a metadata-only watch",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "",
        resources: &["pods", "replicationcontrollers"],
        verbs: &["get", "list", "watch"],
        why: "audit of ReplicationControllers and of Pods no audited controller owns (paginated lists); the Pods that read a ConfigMap holding a config file when it changes",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "apps",
        resources: &["deployments", "statefulsets", "daemonsets", "replicasets"],
        verbs: &["get", "list", "watch"],
        why: "audit of existing pod controllers (paginated lists)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "batch",
        resources: &["jobs", "cronjobs"],
        verbs: &["get", "list", "watch"],
        why: "audit of existing Jobs and CronJobs (paginated lists)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "core.k8sgpt.ai",
        resources: &["k8sgpts"],
        verbs: &["list"],
        why: "audit of the AI tools' resources and other controllers' pod-template kinds, when served (discovery)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "kagent.dev",
        resources: &[
            "modelconfigs",
            "modelproviderconfigs",
            "agents",
            "sandboxagents",
        ],
        verbs: &["list"],
        why: "audit of the AI tools' resources and other controllers' pod-template kinds, when served (discovery)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "ark.mckinsey.com",
        resources: &["models"],
        verbs: &["list"],
        why: "audit of the AI tools' resources and other controllers' pod-template kinds, when served (discovery)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "kaito.sh",
        resources: &["ragengines", "workspaces"],
        verbs: &["list"],
        why: "audit of the AI tools' resources and other controllers' pod-template kinds, when served (discovery)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "aigateway.envoyproxy.io",
        resources: &["aiservicebackends"],
        verbs: &["get", "list", "watch"],
        why: "audit, and the AIServiceBackends an AIGatewayRoute names, watched for the webhook when served (and one the watch has not delivered yet fetched)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "aigateway.envoyproxy.io",
        resources: &["aigatewayroutes"],
        verbs: &["list"],
        why: "audit of the AI tools' resources and other controllers' pod-template kinds, when served (discovery)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "argoproj.io",
        resources: &["rollouts"],
        verbs: &["list"],
        why: "audit of the AI tools' resources and other controllers' pod-template kinds, when served (discovery)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "serving.knative.dev",
        resources: &["services", "configurations", "revisions"],
        verbs: &["list"],
        why: "audit of the AI tools' resources and other controllers' pod-template kinds, when served (discovery)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "serving.kserve.io",
        resources: &["inferenceservices", "llminferenceservices"],
        verbs: &["list"],
        why: "audit of the AI tools' resources and other controllers' pod-template kinds, when served (discovery)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "ray.io",
        resources: &["rayclusters", "rayservices", "rayjobs", "raycronjobs"],
        verbs: &["list"],
        why: "audit of the AI tools' resources and other controllers' pod-template kinds, when served (discovery)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "jobset.x-k8s.io",
        resources: &["jobsets"],
        verbs: &["list"],
        why: "audit of the AI tools' resources and other controllers' pod-template kinds, when served (discovery)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "leaderworkerset.x-k8s.io",
        resources: &["leaderworkersets"],
        verbs: &["list"],
        why: "audit of the AI tools' resources and other controllers' pod-template kinds, when served (discovery)",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "gateway.envoyproxy.io",
        resources: &["backends"],
        verbs: &["get", "list", "watch"],
        why: "the Envoy Gateway objects adapters follow references to, watched for the webhook (one the watch has not delivered yet fetched) and listed by the audit",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "gateway.networking.k8s.io",
        resources: &["backendtlspolicies"],
        verbs: &["list", "watch"],
        why: "the Envoy Gateway objects adapters follow references to, watched for the webhook and listed by the audit",
    },
    Rule {
        scope: Scope::Cluster,
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        why: "a Warning Event on each violating workload (patch updates a repeated event's series)",
    },
    Rule {
        scope: Scope::OwnNamespace,
        api_group: "coordination.k8s.io",
        resources: &["leases"],
        verbs: &["get", "create", "update"],
        why: "leader election: only the Lease holder writes status and events",
    },
];

/// The permission to write PolicyReports in `api` (`--policy-reports`): hostguard lists its own
/// reports to compare them, applies the changed ones (server-side apply: `patch`, and `create`
/// for a report that does not exist yet) and deletes those of namespaces with no results left.
pub fn report_rule(api: crate::policy_report::ReportApi) -> Rule {
    use crate::policy_report::ReportApi;
    Rule {
        scope: Scope::Cluster,
        api_group: api.group(),
        resources: match api {
            ReportApi::OpenReports => &["reports", "clusterreports"],
            ReportApi::Wgpolicyk8s => &["policyreports", "clusterpolicyreports"],
        },
        verbs: &["get", "list", "create", "patch", "delete"],
        why: "the audit's PolicyReports: one per namespace and a cluster report",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy_report::ReportApi;

    #[test]
    fn report_rules_name_each_apis_own_resources() {
        for api in [ReportApi::OpenReports, ReportApi::Wgpolicyk8s] {
            let rule = report_rule(api);
            assert_eq!(
                rule.resources,
                &[api.namespaced().1, api.cluster().1],
                "{api:?}"
            );
            assert!(!rule.verbs.contains(&"*"));
        }
    }

    #[test]
    fn no_secrets_and_no_wildcards() {
        for rule in RULES {
            assert_ne!(rule.api_group, "*");
            for r in rule.resources {
                assert!(!r.contains('*'), "wildcard resource in {rule:?}");
                assert!(
                    !r.starts_with("secrets"),
                    "hostguard must never be granted Secrets: {rule:?}"
                );
            }
            for v in rule.verbs {
                assert_ne!(*v, "*", "wildcard verb in {rule:?}");
            }
            assert!(!rule.why.is_empty());
        }
    }

    /// Every kind the audit may list beyond the built-in ones (`cluster::discovery::wanted`)
    /// can be listed, and nothing more than listed, except the kinds adapters look up
    /// (`related_kinds`), which are also watched for the webhook: never `get`, never a write.
    #[test]
    fn every_discovered_kind_can_be_listed_only_the_looked_up_ones_watched_and_the_named_ones_fetched()
     {
        let looked_up: Vec<(&str, &str)> = crate::detect::adapters::related_kinds().collect();
        let fetched: Vec<(&str, &str)> =
            crate::detect::adapters::related_kinds_fetched_by_name().collect();
        for (k, _) in crate::cluster::discovery::wanted() {
            let rules: Vec<&Rule> = RULES
                .iter()
                .filter(|r| r.api_group == k.group && r.resources.contains(&k.plural))
                .collect();
            assert_eq!(rules.len(), 1, "{}/{} in one rule", k.group, k.plural);
            let want: &[&str] = if fetched.contains(&(k.group, k.kind)) {
                &["get", "list", "watch"]
            } else if looked_up.contains(&(k.group, k.kind)) {
                &["list", "watch"]
            } else {
                &["list"]
            };
            assert_eq!(rules[0].verbs, want, "{}/{}", k.group, k.plural);
            assert_eq!(rules[0].scope, Scope::Cluster);
        }
        // And no such rule grants a kind of these groups that hostguard does not read.
        let wanted: Vec<(&str, &str)> = crate::cluster::discovery::wanted()
            .iter()
            .map(|(k, _)| (k.group, k.plural))
            .collect();
        for rule in RULES.iter().filter(|r| !r.verbs.contains(&"get")) {
            for r in rule.resources {
                if rule.verbs.iter().all(|v| matches!(*v, "list" | "watch")) {
                    assert!(
                        wanted.contains(&(rule.api_group, r)),
                        "{}/{r}",
                        rule.api_group
                    );
                }
            }
        }
    }

    #[test]
    fn leases_are_only_in_the_own_namespace() {
        for rule in RULES {
            if rule.resources.contains(&"leases") {
                assert_eq!(rule.scope, Scope::OwnNamespace);
            } else {
                assert_eq!(rule.scope, Scope::Cluster);
            }
        }
    }

    #[test]
    fn writes_are_limited_to_status_events_and_the_lease() {
        for rule in RULES {
            let writes = rule
                .verbs
                .iter()
                .any(|v| !matches!(*v, "get" | "list" | "watch"));
            if writes {
                assert!(
                    rule.resources
                        .iter()
                        .all(|r| r.ends_with("/status") || *r == "events" || *r == "leases"),
                    "unexpected write permission: {rule:?}"
                );
            }
        }
    }
}
