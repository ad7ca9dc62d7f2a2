namespace DeltaMigrate.Engine.Tests.Migration;

/// <summary>How a faulted migration must end: which copy runs, and what each side reports.</summary>
public enum Outcome
{
    /// <summary>The source runs; the destination was removed; both sides report a failure.</summary>
    SourceRuns,

    /// <summary>The source runs; the destination never got the commit and waits, paused, in doubt.</summary>
    SourceRunsDestinationInDoubt,

    /// <summary>The commit was lost: both copies paused, both sides in doubt.</summary>
    BothPausedInDoubt,

    /// <summary>The destination committed and runs; its answer was lost, so the source is paused and in doubt.</summary>
    DestinationRunsSourceInDoubt,
}
