#!/bin/sh
# The GitLab CI side of the templates, through GitLab's REST API with curl and jq. The job
# token cannot write notes or issues: PLEXICA_GITLAB_TOKEN is a project access token (scope
# api, role Reporter; Developer to close issues), a masked CI/CD variable. CI_API_V4_URL
# and CI_PROJECT_ID come from GitLab. What is posted is built by comment.sh.
#
#   gitlab.sh plan-note PLAN_MD
#       The plan as ONE merge-request note (CI_MERGE_REQUEST_IID), updated in place; the
#       note is the token's user's that starts with the hidden marker; the previous plan
#       stays, collapsed. Reads what comment.sh plan-body reads.
#   gitlab.sh reviewed-plan COMMIT DIR
#       Downloads into DIR/plan.bin the plan reviewed on the merge request merged as COMMIT
#       (the artifact of the job the note names), refusing anything else (as github.sh).
#   gitlab.sh drift-issue REPORT_MD STATUS
#       ONE open issue (label plexica-drift), opened, updated, or closed once in sync;
#       exits STATUS.
set -eu
here=$(dirname "$0")
api=${CI_API_V4_URL:?set by GitLab CI}
project=${CI_PROJECT_ID:?set by GitLab CI}
: "${PLEXICA_GITLAB_TOKEN:?a project access token with the api scope (a masked CI/CD variable)}"
PLAN='<!-- plexica-gitops-plan -->'
DRIFT='<!-- plexica-gitops-drift -->'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
    printf 'gitlab.sh: %s\n' "$*" >&2
    exit 1
}

gl() {
    curl --silent --show-error --fail-with-body --header "PRIVATE-TOKEN: $PLEXICA_GITLAB_TOKEN" "$@"
}

# Every page of a listing ($1, with its query), as arrays one after the other.
gl_all() {
    page=1
    while :; do
        gl "$api/projects/$project/$1&per_page=100&page=$page" >"$work/page.json"
        cat "$work/page.json"
        [ "$(jq length "$work/page.json")" -eq 100 ] || return 0
        page=$((page + 1))
    done
}

me() { gl "$api/user" | jq -r .username; }

# The id of the token user's plan note on merge request $1 (empty when there is none).
plan_note() {
    gl_all "merge_requests/$1/notes?sort=asc" >"$work/notes.json"
    "$here/comment.sh" pick "$PLAN" "$(me)" "$work/notes.json"
}

plan_note_cmd() {
    plan=$1 mr=${CI_MERGE_REQUEST_IID:?set in merge request pipelines}
    id=$(plan_note "$mr")
    : >"$work/previous.md"
    [ -z "$id" ] || jq -r --argjson id "$id" '.[] | select(.id == $id) | .body' \
        "$work/notes.json" >"$work/previous.md"
    "$here/comment.sh" plan-body "$plan" "$work/previous.md" >"$work/body.md"
    notes="$api/projects/$project/merge_requests/$mr/notes"
    if [ -n "$id" ]; then
        gl --request PUT --data-urlencode "body@$work/body.md" "$notes/$id" >/dev/null
        echo "Updated the plan note $id on !$mr."
    else
        gl --request POST --data-urlencode "body@$work/body.md" "$notes" >/dev/null
        echo "Posted the plan on !$mr."
    fi
}

reviewed_plan() {
    commit=$1 dir=$2
    mr=$(gl "$api/projects/$project/repository/commits/$commit/merge_requests" |
        jq -r '[.[] | select(.state == "merged")] | first | .iid // empty')
    [ -n "$mr" ] || fail "$commit was not merged from a merge request: no plan was reviewed for it, nothing is applied."
    head=$(gl "$api/projects/$project/merge_requests/$mr" | jq -r .sha)
    id=$(plan_note "$mr")
    [ -n "$id" ] || fail "merge request !$mr has no plan note: nothing was reviewed, nothing is applied."
    mkdir -p "$dir"
    jq -r --argjson id "$id" '.[] | select(.id == $id) | .body' "$work/notes.json" >"$dir/comment.md"
    job=$("$here/comment.sh" field run "$dir/comment.md")
    [ -n "$job" ] || fail "the plan note on !$mr names no job: nothing is applied."
    gl --output "$dir/plan.bin" "$api/projects/$project/jobs/$job/artifacts/plan.bin"
    "$here/comment.sh" verify "$dir/comment.md" "$dir/plan.bin" "$head"
    echo "The plan reviewed on !$mr (job $job, made at $head) is in $dir/plan.bin."
}

drift_issue() {
    report=$1 status=$2 label=${DRIFT_LABEL:-plexica-drift}
    gl_all "issues?state=opened&labels=$label" >"$work/issues.json"
    iid=$("$here/comment.sh" pick "$DRIFT" "$(me)" "$work/issues.json" iid)
    "$here/comment.sh" drift-body "$report" "$status" >"$work/body.md"
    issues="$api/projects/$project/issues"
    if [ "$status" -eq 0 ]; then
        [ -n "$iid" ] || exit 0
        gl --request POST --data-urlencode "body@$work/body.md" "$issues/$iid/notes" >/dev/null
        gl --request PUT --data "state_event=close" "$issues/$iid" >/dev/null
        echo "In sync again: closed #$iid."
        exit 0
    fi
    title="Drift: the live platform differs from git"
    [ "$status" -eq 2 ] || title="Drift check failed: part of the platform was not observed"
    if [ -n "$iid" ]; then
        gl --request PUT --data-urlencode "title=$title" --data-urlencode "description@$work/body.md" \
            "$issues/$iid" >/dev/null
        echo "Updated #$iid: $title."
    else
        gl --request POST --data-urlencode "title=$title" --data-urlencode "description@$work/body.md" \
            --data-urlencode "labels=$label" "$issues" | jq -r '"Opened #\(.iid): \(.web_url)"'
    fi
    exit "$status"
}

command=${1:-}
[ $# -gt 0 ] && shift
case $command in
plan-note) plan_note_cmd "${1:?PLAN_MD}" ;;
reviewed-plan) reviewed_plan "${1:?COMMIT}" "${2:?DIR}" ;;
drift-issue) drift_issue "${1:?REPORT_MD}" "${2:?STATUS}" ;;
*) fail "usage: gitlab.sh plan-note|reviewed-plan|drift-issue ARGS" ;;
esac
