"""The data browser: prompts, completions, rankings and skipped tasks listed, searched, filtered and paged."""
