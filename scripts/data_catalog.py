#!/usr/bin/env python3
"""Writes crates/redtrace-datasets/catalog.json: where `redtrace data pull` fetches each data
set's files, pinned by commit and SHA-256.

Input: a PROVENANCE.jsonl of the data sets (one row per file: file, sha256, bytes, source,
path, commit), as ../shared/data ships. Only files published in a GitHub repository at a known
commit are downloadable; files derived by hand or taken from a package are listed as
not downloadable, with their expected place, so `data info` can say where to get them.

Usage: python3 scripts/data_catalog.py ../shared/data/PROVENANCE.jsonl
"""

import json
import sys
import urllib.parse

SETS = {
    "xstest": ("xstest/", "XSTest prompts, the 2,250 labelled completions, the authors' automated labels", "CC-BY-4.0"),
    "airbench": ("air_bench_2024/", "AIR-Bench 2024 judge templates, risk taxonomy, judged sample responses (the prompts are on the Hugging Face hub, stanford-crfm/air-bench-2024)", "CC-BY-4.0 data, Apache-2.0 code"),
    "cyberseceval": ("cyberseceval/", "CyberSecEval MITRE, false refusals, interpreter, prompt injection, spear phishing", "MIT"),
    "harmbench": ("harmbench/", "HarmBench text behaviours and targets", "MIT"),
    "advbench": ("advbench/", "AdvBench harmful behaviours and strings", "MIT"),
    "jbb": ("jailbreakbench_jbb/", "JailbreakBench behaviours and the judge comparison", "MIT"),
    "simplesafetytests": ("simplesafetytests/", "SimpleSafetyTests", "CC-BY-4.0"),
    "strongreject": ("strongreject/", "StrongREJECT forbidden prompts", "MIT"),
    "wildguardtest": ("wildguardtest_partial/", "WildGuardTest prompts with human harm labels (1,554 of 1,725)", "ODC-BY"),
    "human-labelled": ("human_labelled/", "Human-labelled responses and prompts for judge validation", "per source"),
}


# Files upstream publishes that the data collection does not hold, pinned by what upstream
# itself names them by (a git blob id at a commit); a download is checked against it.
EXTRA = {
    "cyberseceval": [
        {
            "path": "cyberseceval/mitre_benchmark_100_per_category_with_augmentation.json",
            "bytes": 0,
            "sha256": "",
            "git_blob": "da9bca1fae21ebe55eead0af9b1ce9a9cfdf3514",
            "url": "https://raw.githubusercontent.com/meta-llama/PurpleLlama/4be64c3a24442b51c76175e6ec67722cc3f5fe38/CybersecurityBenchmarks/datasets/mitre/mitre_benchmark_100_per_category_with_augmentation.json",
            "origin": "github.com/meta-llama/PurpleLlama at 4be64c3a2444, CybersecurityBenchmarks/datasets/mitre/mitre_benchmark_100_per_category_with_augmentation.json (the official MITRE prompts)",
        },
    ],
}


def main():
    rows = [json.loads(line) for line in open(sys.argv[1])]
    catalog = []
    for name, (prefix, description, license_) in SETS.items():
        files = []
        for row in rows:
            if not row["file"].startswith(prefix) or "/artifacts/" in row["file"]:
                continue
            source = row.get("source") or ""
            url = None
            origin = "derived for this collection; not published as such"
            if source.startswith("github:") and row.get("commit"):
                repo = source[len("github:"):]
                path = "/".join(urllib.parse.quote(part) for part in row["path"].split("/"))
                url = f"https://raw.githubusercontent.com/{repo}/{row['commit']}/{path}"
                origin = f"github.com/{repo} at {row['commit'][:12]}, {row['path']}"
            elif source:
                origin = f"{source}, {row.get('path')}"
            files.append({
                "path": row["file"],
                "bytes": int(row["bytes"]),
                "sha256": row["sha256"],
                "url": url,
                "origin": origin,
            })
        files.extend(EXTRA.get(name, []))
        catalog.append({"name": name, "description": description, "license": license_, "files": files})
    with open("crates/redtrace-datasets/catalog.json", "w") as out:
        json.dump(catalog, out, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main()
