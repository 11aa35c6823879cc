#!/bin/sh
# The GitHub Actions side of the templates, through gh (preinstalled on GitHub's runners;
# GH_TOKEN and GITHUB_REPOSITORY from the workflow). What is posted is built by comment.sh.
#
#   github.sh plan-comment PR_NUMBER PLAN_MD
#       The plan as ONE pull-request comment, updated in place on every push. The comment is
#       the one the bot wrote that starts with the hidden marker (anyone else's comment with
#       the marker is ignored); the previous plan stays, collapsed. Reads what comment.sh
#       plan-body reads (PLAN_FILE, PLAN_REVISION, PLAN_RUN, PLAN_URL).
#   github.sh reviewed-plan COMMIT DIR
#       Downloads into DIR/plan.bin the plan reviewed on the pull request merged as COMMIT,
#       and refuses anything else: no merged pull request, no plan comment by the bot, a
#       plan made before the pull request's last push, an artifact whose sha256 is not the
#       one the comment showed. (`plexica-gitops apply` then refuses it when it is stale.)
#   github.sh drift-issue REPORT_MD STATUS
#       ONE open issue (label plexica-drift, hidden marker), opened or updated when drift was
#       found or could not be checked, closed with a comment once in sync; exits STATUS
#       (`plexica-gitops drift`'s exit: 0 in sync, 2 drift, 1 not observed).
#
# PLAN_COMMENT_AUTHOR: the bot's login (default github-actions[bot]); DRIFT_LABEL.
set -eu
here=$(dirname "$0")
author=${PLAN_COMMENT_AUTHOR:-github-actions[bot]}
repo=${GITHUB_REPOSITORY:?set by GitHub Actions}
PLAN='<!-- plexica-gitops-plan -->'
DRIFT='<!-- plexica-gitops-drift -->'
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
    printf '::error::%s\n' "$*" >&2
    exit 1
}

# The id of the bot's plan comment on pull request $1 (empty when there is none).
plan_comment() {
    gh api --paginate "repos/$repo/issues/$1/comments?per_page=100" >"$work/comments.json"
    "$here/comment.sh" pick "$PLAN" "$author" "$work/comments.json"
}

plan_comment_cmd() {
    pr=$1 plan=$2
    id=$(plan_comment "$pr")
    : >"$work/previous.md"
    [ -z "$id" ] || gh api "repos/$repo/issues/comments/$id" --jq .body >"$work/previous.md"
    "$here/comment.sh" plan-body "$plan" "$work/previous.md" >"$work/body.md"
    if [ -n "$id" ]; then
        gh api --method PATCH "repos/$repo/issues/comments/$id" -F "body=@$work/body.md" --jq .html_url
    else
        gh api --method POST "repos/$repo/issues/$pr/comments" -F "body=@$work/body.md" --jq .html_url
    fi
}

reviewed_plan() {
    commit=$1 dir=$2
    pr=$(gh api "repos/$repo/commits/$commit/pulls" \
        --jq '[.[] | select(.merged_at != null)] | first | .number // empty')
    [ -n "$pr" ] || fail "$commit was not merged from a pull request: no plan was reviewed for it, nothing is applied."
    head=$(gh api "repos/$repo/pulls/$pr" --jq .head.sha)
    id=$(plan_comment "$pr")
    [ -n "$id" ] || fail "pull request #$pr has no plan comment: nothing was reviewed, nothing is applied."
    mkdir -p "$dir"
    gh api "repos/$repo/issues/comments/$id" --jq .body >"$dir/comment.md"
    run=$("$here/comment.sh" field run "$dir/comment.md")
    gh run download "$run" --repo "$repo" --name plexica-plan --dir "$dir"
    "$here/comment.sh" verify "$dir/comment.md" "$dir/plan.bin" "$head"
    echo "The plan reviewed on #$pr (run $run, made at $head) is in $dir/plan.bin."
}

drift_issue() {
    report=$1 status=$2 label=${DRIFT_LABEL:-plexica-drift}
    gh api --paginate "repos/$repo/issues?state=open&labels=$label&per_page=100" >"$work/issues.json"
    number=$("$here/comment.sh" pick "$DRIFT" "$author" "$work/issues.json" number)
    "$here/comment.sh" drift-body "$report" "$status" >"$work/body.md"
    if [ "$status" -eq 0 ]; then
        [ -n "$number" ] || exit 0
        gh api --method POST "repos/$repo/issues/$number/comments" -F "body=@$work/body.md" >/dev/null
        gh api --method PATCH "repos/$repo/issues/$number" -f state=closed -f state_reason=completed >/dev/null
        echo "In sync again: closed #$number."
        exit 0
    fi
    title="Drift: the live platform differs from git"
    [ "$status" -eq 2 ] || title="Drift check failed: part of the platform was not observed"
    if [ -n "$number" ]; then
        gh api --method PATCH "repos/$repo/issues/$number" -f "title=$title" -F "body=@$work/body.md" --jq .html_url
    else
        gh label create "$label" --repo "$repo" --color D93F0B --description "plexica-gitops drift" 2>/dev/null || true
        gh api --method POST "repos/$repo/issues" -f "title=$title" -F "body=@$work/body.md" -f "labels[]=$label" --jq .html_url
    fi
    exit "$status"
}

command=${1:-}
[ $# -gt 0 ] && shift
case $command in
plan-comment) plan_comment_cmd "${1:?PR_NUMBER}" "${2:?PLAN_MD}" ;;
reviewed-plan) reviewed_plan "${1:?COMMIT}" "${2:?DIR}" ;;
drift-issue) drift_issue "${1:?REPORT_MD}" "${2:?STATUS}" ;;
*) fail "usage: github.sh plan-comment|reviewed-plan|drift-issue ARGS" ;;
esac
