namespace DeltaMigrate.Module.Infrastructure;

/// <summary>One Receive-KvmVM running as a thread job in a <see cref="RemoteDestination"/>'s session: where to connect, with which token.</summary>
internal sealed class RemoteReceiver(RemoteDestination host, Guid job, int port, string token)
{
    private bool _ended;

    public string Host => host.Host;

    public int Port { get; } = port;

    /// <summary>Kept in memory only: handed to the engine, never written anywhere.</summary>
    public string Token { get; } = token;

    /// <summary>Waits for the receiving side to end and removes its job; its result, if it had one.</summary>
    public System.Management.Automation.PSObject? Finish()
    {
        if (_ended)
        {
            return null;
        }

        _ended = true;
        return host.FinishReceiver(job);
    }

    /// <summary>Removes the job if it is still there (after a failure on this side).</summary>
    public void Stop()
    {
        if (!_ended)
        {
            _ended = true;
            host.StopReceiver(job);
        }
    }
}
