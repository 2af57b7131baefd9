//! The built-in offline demo team (`agent-team up --demo`): a leader and three teammates working
//! through eight real shell tasks with dependencies, one of which waits for your approval.

use crate::{ConfigError, TeamConfig};
use std::path::Path;

/// The demo's team file, shown by `agent-team up --demo --print`.
pub const DEMO_TOML: &str = r#"name = "demo"
goal = "Build a small word-statistics report from a generated corpus"
max_teammates = 3

[defaults]
provider = "exec"
restart = "on-failure"

[roles.worker]
description = "Runs shell tasks from the board"
# Publishing writes outside out/, so a human approves it (agent-team approve ID, or in the leader pane).
permissions = { bash = "allow", "bash(*publish*)" = "ask" }

[[teammates]]
name = "builder-1"
role = "worker"
[[teammates]]
name = "builder-2"
role = "worker"
[[teammates]]
name = "builder-3"
role = "worker"

[[tasks]]
key = "corpus"
title = "Generate the corpus"
run = "mkdir -p src out && for i in $(seq 1 400); do echo \"agent team $i supervisor pane task message $((i % 7))\"; done > src/corpus.txt && sleep 0.3 && wc -l src/corpus.txt"

[[tasks]]
key = "count"
title = "Count words"
run = "sleep 0.5 && wc -w < src/corpus.txt > out/count.txt && echo words: $(cat out/count.txt)"
after = ["corpus"]

[[tasks]]
key = "freq"
title = "Word frequencies"
run = "sleep 0.5 && tr ' ' '\\n' < src/corpus.txt | sort | uniq -c | sort -rn > out/freq.txt && head -5 out/freq.txt"
after = ["corpus"]

[[tasks]]
key = "sums"
title = "Checksums"
run = "sleep 0.5 && sha256sum src/corpus.txt > out/sums.txt && cat out/sums.txt"
after = ["corpus"]

[[tasks]]
key = "bundle"
title = "Bundle the sources"
run = "sleep 0.3 && tar czf out/bundle.tgz src && ls -l out/bundle.tgz"
after = ["freq"]

[[tasks]]
key = "selfcheck"
title = "Check the tools exist"
run = "for t in sh wc sort uniq tar sha256sum; do command -v $t >/dev/null || { echo missing $t; exit 1; }; done; echo all tools present"

[[tasks]]
key = "publish"
title = "Publish the report (needs approval)"
run = "echo publish: && { echo '# Word report'; echo; cat out/count.txt out/sums.txt; echo; head -10 out/freq.txt; } > REPORT.md && wc -l REPORT.md"
after = ["count", "sums", "bundle", "selfcheck"]

[[tasks]]
key = "tidy"
title = "Tidy up"
run = "rm -f out/bundle.tgz && ls out"
after = ["publish"]
"#;

/// The demo team, working in `workspace`.
pub fn demo_team(workspace: &Path) -> Result<TeamConfig, ConfigError> {
    let mut cfg = crate::teamfile::parse_team_file(Path::new("<built-in demo>"), DEMO_TOML)?;
    cfg.workspace = workspace.to_path_buf();
    cfg.source = None;
    Ok(cfg)
}
