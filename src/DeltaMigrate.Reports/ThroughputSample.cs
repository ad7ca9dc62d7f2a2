namespace DeltaMigrate.Reports;

/// <summary>Network throughput of one round: its wire bytes over its duration, at the round's end.</summary>
public sealed record ThroughputSample(int Round, double Seconds, double Mbps);
