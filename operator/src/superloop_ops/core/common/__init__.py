"""Pure helpers every kind shares: JSON/timestamp conventions and metav1.Condition builders."""
