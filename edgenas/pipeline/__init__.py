"""`edgenas build`: the stages of the other verbs run in order in one resumable run directory."""
