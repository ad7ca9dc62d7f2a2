namespace DeltaMigrate.Engine.Migration;

/// <summary>What to do when a migration runs past its time limit.</summary>
public enum TimeoutAction
{
    /// <summary>Cancel the migration; the source keeps running.</summary>
    Cancel,

    /// <summary>Pause the guest so the remaining pages stop changing, and finish.</summary>
    Pause,
}
