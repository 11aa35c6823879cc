#!/bin/sh
# shellcheck disable=SC2016  # backticks in the texts are Markdown, not commands
# The pure half of the CI templates (no network): builds the pull-request comment and the
# drift issue, and reads them back. The github-*.sh and gitlab-*.sh scripts fetch and post.
#
#   comment.sh plan-body PLAN_MD [PREVIOUS_BODY]   the plan comment, on standard output
#   comment.sh drift-body DRIFT_MD STATUS          the drift issue's body (STATUS: drift's exit)
#   comment.sh pick MARKER AUTHOR [JSON [FIELD]]   FIELD (id) of AUTHOR's comment that starts
#                                                  with MARKER, in a JSON listing
#   comment.sh field NAME [BODY]                   a field of the plan comment's hidden meta line
#   comment.sh verify BODY PLAN_FILE [REVISION]    exit 0 when PLAN_FILE is the reviewed plan
#   comment.sh codequality VALIDATE_JSON [DIR]     `validate --format json` as a GitLab report
#
# plan-body reads PLAN_FILE (the saved plan: its sha256 is recorded), PLAN_REVISION (the
# commit planned), PLAN_RUN (the CI run or job holding the plan artifact), PLAN_URL (a link
# to it) and PLAN_COMMENT_LIMIT (bytes; GitHub allows 65536 characters) from the
# environment. The comment keeps one previous plan, collapsed; a plan too long for the
# comment keeps its summary and points at the artifact.
set -eu

PLAN_MARKER='<!-- plexica-gitops-plan -->'
DRIFT_MARKER='<!-- plexica-gitops-drift -->'
META='<!-- plexica-gitops-plan-meta'
FOOT='<!-- plexica-gitops-plan:foot -->'

die() {
    printf 'comment.sh: %s\n' "$*" >&2
    exit 1
}

size() { wc -c <"$1" | tr -d ' '; }

short() { printf '%.12s' "$1"; }

# The report, or when the comment would be too long its head: everything before the first
# collapsed section (the summary, warnings, errors), so no fence or <details> is left open,
# then WHERE (where the whole report is).
fit() {
    report=$1 room=$2 where=$3
    if [ "$(size "$report")" -le "$room" ]; then
        cat "$report"
        return
    fi
    awk -v room="$room" '
        /^<details>/ { exit }
        { used += length($0) + 1; if (used > room) exit; print }
    ' "$report"
    printf '\n> **Too long for a comment (%s bytes):** %s\n' "$(size "$report")" "$where"
}

# The plan of a previous plan comment: after the meta line, before the footer.
previous_plan() {
    awk -v meta="$META" -v foot="$FOOT" '
        NR == 1 { next }
        index($0, meta) == 1 { next }
        $0 == foot { exit }
        { print }
    ' "$1"
}

plan_body() {
    plan=$1 previous=${2:-}
    [ -f "$plan" ] || die "no plan markdown at $plan"
    limit=${PLAN_COMMENT_LIMIT:-65000}
    digest=
    if [ -n "${PLAN_FILE:-}" ] && [ -f "$PLAN_FILE" ]; then
        digest=$(sha256sum "$PLAN_FILE" | cut -d' ' -f1)
    fi
    revision=${PLAN_REVISION:-}
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT

    {
        printf '%s\n' "$PLAN_MARKER"
        printf '%s run=%s revision=%s sha256=%s -->\n' "$META" "${PLAN_RUN:-}" "$revision" "$digest"
    } >"$work/head"
    {
        printf '\n%s\n---\n<sub>Plan of `%s`' "$FOOT" "$(short "${revision:-unknown}")"
        [ -z "${PLAN_URL:-}" ] || printf ' · [run](%s)' "$PLAN_URL"
        if [ -n "$digest" ]; then
            printf ' · saved plan sha256 `%s`. On merge, exactly this plan is applied, and only while it is still current.</sub>\n' "$(short "$digest")"
        else
            printf ' · no saved plan: nothing will be applied from it.</sub>\n'
        fi
    } >"$work/foot"
    room=$((limit - $(size "$work/head") - $(size "$work/foot") - 200))
    fit "$plan" "$room" "the whole plan is the \`plexica-plan\` artifact of ${PLAN_URL:-the plan run} (\`plexica-gitops show plan.bin\`)." >"$work/plan"
    cat "$work/head" "$work/plan" "$work/foot" >"$work/body"

    if [ -n "$previous" ] && [ -s "$previous" ]; then
        old=$(sed -n 2p "$previous" | sed -n 's/.* revision=\([^ ]*\) .*/\1/p')
        previous_plan "$previous" >"$work/old"
        {
            printf '\n<details><summary>Previous plan (`%s`)</summary>\n\n' "$(short "${old:-unknown}")"
            cat "$work/old"
            printf '\n</details>\n'
        } >"$work/collapsed"
        if [ $(($(size "$work/body") + $(size "$work/collapsed"))) -le "$limit" ]; then
            cat "$work/collapsed" >>"$work/body"
        else
            printf '\n<sub>The previous plan (`%s`) is too long to keep here.</sub>\n' \
                "$(short "${old:-unknown}")" >>"$work/body"
        fi
    fi
    cat "$work/body"
}

drift_body() {
    report=$1 status=$2
    [ -f "$report" ] || die "no drift report at $report"
    limit=${PLAN_COMMENT_LIMIT:-65000}
    printf '%s\n' "$DRIFT_MARKER"
    case $status in
    0) printf '**In sync** as of %s.\n\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" ;;
    2) printf '**Drift detected** on %s: the live platform differs from what was last applied (or git is ahead of it).\n\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" ;;
    *) printf '**Drift could not be checked** on %s (exit %s): part of the platform was not observed, so nothing is claimed in sync.\n\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$status" ;;
    esac
    [ -z "${PLAN_URL:-}" ] || printf 'Run: %s\n\n' "$PLAN_URL"
    fit "$report" $((limit - 1000)) "the whole report is in the log of ${PLAN_URL:-the drift run}."
}

pick() {
    marker=$1 author=$2 json=${3:--} key=${4:-id}
    # GitHub lists comments with .user.login, GitLab notes with .author.username; a
    # paginated listing is several arrays one after the other (jq -s joins them).
    jq -rs --arg m "$marker" --arg a "$author" --arg k "$key" '
        [add // [] | .[]
         | select(((.user.login // .author.username) == $a) and ((.body // .description // "") | startswith($m)))]
        | sort_by(.id) | first | .[$k] // empty' "$json"
}

field() {
    name=$1 body=${2:--}
    sed -n 2p "$body" | tr ' ' '\n' | sed -n "s/^$name=//p"
}

verify() {
    body=$1 plan=$2 revision=${3:-}
    [ "$(sed -n 1p "$body")" = "$PLAN_MARKER" ] || die "$body is not a plexica-gitops plan comment"
    want=$(field sha256 "$body")
    [ -n "$want" ] || die "the reviewed plan comment records no saved plan (the plan failed): nothing to apply"
    [ -f "$plan" ] || die "no plan file at $plan"
    got=$(sha256sum "$plan" | cut -d' ' -f1)
    [ "$got" = "$want" ] ||
        die "$plan (sha256 $(short "$got")) is not the plan shown for review (sha256 $(short "$want")); refusing to apply it"
    planned=$(field revision "$body")
    if [ -n "$revision" ] && [ "$planned" != "$revision" ]; then
        die "the reviewed plan was made at $(short "$planned"), not at the merged head $(short "$revision"): re-run the plan on the pull request"
    fi
}

codequality() {
    json=$1 dir=${2:-desired-state}
    jq --arg dir "$dir" '[.findings[] | {
        description: "\(.code): \(.message)",
        check_name: .code,
        severity: (if .severity == "error" then "major" else "minor" end),
        fingerprint: ("\(.code)|\(.file)|\(.line)|\(.message)" | @base64),
        location: {path: "\($dir)/\(.file // "")", lines: {begin: (.line // 1)}}
    }]' "$json"
}

command=${1:-}
[ $# -gt 0 ] && shift
case $command in
plan-body) plan_body "$@" ;;
drift-body) drift_body "$@" ;;
pick) pick "$@" ;;
field) field "$@" ;;
verify) verify "$@" ;;
codequality) codequality "$@" ;;
*) die "usage: comment.sh plan-body|drift-body|pick|field|verify|codequality ARGS" ;;
esac
