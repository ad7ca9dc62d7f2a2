namespace DeltaMigrate.Reports;

/// <summary>One line of a migration's summary table, already formatted for people.</summary>
public sealed record SummaryItem(string Label, string Value);
