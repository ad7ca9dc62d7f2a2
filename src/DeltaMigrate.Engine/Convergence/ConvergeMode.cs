namespace DeltaMigrate.Engine.Convergence;

/// <summary>What a migration does when pre-copy stops converging.</summary>
public enum ConvergeMode
{
    /// <summary>Detect the stall and throttle the guest's vCPUs step by step until the rest fits the downtime limit.</summary>
    Throttle,

    /// <summary>Do nothing: the migration runs until it converges on its own or -Timeout acts (the behaviour before -Converge).</summary>
    Never,
}
