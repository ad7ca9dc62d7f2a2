namespace DeltaMigrate.Reports;

/// <summary>Network throughput between one round and the one before it (the first against the start).</summary>
public sealed record ThroughputSample(int Round, double Seconds, double Mbps);
