using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Vm;

namespace DeltaMigrate.Module.Infrastructure;

/// <summary>
/// The destination host's half of Move-KvmVM -DestinationHost, over PowerShell remoting (SSH): the
/// same module version there, a waiting VM that matches the source, and Receive-KvmVM as a job in
/// that session. The token comes back inside the session and goes straight to the engine: it is
/// never printed and never on a command line.
/// </summary>
internal sealed class RemoteDestination(PSCmdlet cmdlet, PSObject session, bool ownsSession, string host)
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);
    private PSObject? _job;

    /// <summary>The address the source's side connects to (the session's host).</summary>
    public string Host { get; } = host;

    public int Port { get; private set; }

    public string Token { get; private set; } = "";

    public static RemoteDestination Connect(PSCmdlet cmdlet, string? hostName, string? userName, string? keyFilePath, int sshPort,
        System.Collections.Hashtable? sshOptions, PSObject? session)
    {
        if (session is not null)
        {
            var computer = session.Properties["ComputerName"]?.Value?.ToString()
                ?? throw new EngineException("InvalidSession", ErrorKind.InvalidArgument, "-Session is not an open PSSession.");
            return new RemoteDestination(cmdlet, session, ownsSession: false, computer);
        }

        var opened = Invoke(cmdlet, """
            param($HostName, $UserName, $KeyFilePath, $Port, $Options)
            $a = @{ HostName = $HostName; SSHTransport = $true; ErrorAction = 'Stop' }
            if ($Options) { $a.Options = $Options }
            if ($UserName) { $a.UserName = $UserName }
            if ($KeyFilePath) { $a.KeyFilePath = $KeyFilePath }
            if ($Port) { $a.Port = $Port }
            New-PSSession @a
            """, hostName, userName, keyFilePath, sshPort > 0 ? sshPort : null, sshOptions).Single();
        return new RemoteDestination(cmdlet, opened, ownsSession: true, hostName!);
    }

    /// <summary>Imports the same module version there (an installed one, else the manifest at this host's path), or says what to install.</summary>
    public void ImportModule(Version version, string modulePath) =>
        InvokeRemote("""
            param($ModulePath, $Version)
            $m = Get-Module DeltaMigrate -ListAvailable | Where-Object Version -EQ $Version | Select-Object -First 1
            $have = (Import-Module $(if ($m) { $m.Path } else { $ModulePath }) -PassThru -ErrorAction Stop | Select-Object -First 1).Version
            if ($have -ne [version]$Version) { throw "DeltaMigrate $have is on the destination host but this host runs $Version. Install the same version there." }
            """, modulePath, version.ToString());

    /// <summary>Starts a waiting VM like the source there, from what it was started with (or, for a foreign VM, what its QEMU says).</summary>
    public void StartWaitingVm(VmRecord source, string name)
    {
        var spec = source.Spec ?? throw new EngineException("SourceSpecUnknown", ErrorKind.InvalidState,
            source.Foreign
                ? $"VM '{source.Name}' has drives ({string.Join(", ", source.ForeignDrives)}) whose attachment QMP does not describe, so no matching VM can be started for it. Start one on the destination host yourself (its command line with -incoming defer) and pass its socket with -DestinationQmpSocket."
                : $"VM '{source.Name}' was started by an older DeltaMigrate that did not record its settings; start a waiting VM on the destination host yourself and use Receive-KvmVM there.")
        { Target = source.Name };
        var start = new System.Collections.Hashtable
        {
            ["Name"] = name,
            ["Memory"] = spec.MemoryBytes,
            ["Machine"] = spec.Machine,
            ["Accelerator"] = spec.Accelerator.ToString(),
            ["QemuPath"] = spec.QemuPath,
            ["ArgumentList"] = spec.ExtraArguments.ToArray(),
        };
        if (spec.Disk is not null)
        {
            start["Disk"] = spec.Disk;
        }
        else
        {
            start["Kernel"] = spec.Kernel;
            start["Initrd"] = spec.Initrd;
            start["Append"] = spec.Append;
        }

        InvokeRemote("""
            param($Start)
            $Start = @{} + $Start
            foreach ($k in @($Start.Keys)) { if ($null -eq $Start[$k]) { $Start.Remove($k) } }
            $null = Start-KvmVM @Start -Incoming -ErrorAction Stop
            """, start);
    }

    /// <summary>Runs Receive-KvmVM there (for the VM by name, or a foreign one by its QMP socket) as a job and waits for its ready object (endpoint and token).</summary>
    public void StartReceiver(string name, string? qmpSocket)
    {
        _job = Invoke(cmdlet, """
            param($Session, $Name, $QmpSocket)
            Invoke-Command -Session $Session -AsJob -ArgumentList $Name, $QmpSocket -ScriptBlock {
                param($n, $socket)
                if ($socket) { Receive-KvmVM -QmpSocket $socket -Listen 0.0.0.0:0 -Confirm:$false }
                else { Receive-KvmVM $n -Listen 0.0.0.0:0 -Confirm:$false }
            }
            """, session, name, qmpSocket).Single();
        var ready = Invoke(cmdlet, """
            param($Job, $Seconds)
            $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
            while ($Job.ChildJobs[0].Output.Count -lt 1) {
                if ($Job.State -ne 'Running') { Receive-Job $Job -ErrorAction Stop; throw "Receive-KvmVM ended on the destination host before it was ready ($($Job.State))." }
                if ([DateTime]::UtcNow -gt $deadline) { throw "Receive-KvmVM on the destination host was not ready within $Seconds s." }
                Start-Sleep -Milliseconds 50
            }
            $Job.ChildJobs[0].Output[0]
            """, _job, ReadyTimeout.TotalSeconds).Single();
        var endpoint = ready.Properties["Endpoint"].Value.ToString()!;
        Port = int.Parse(endpoint[(endpoint.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        Token = ready.Properties["Token"].Value.ToString()!;
    }

    /// <summary>The receiving side's result (or its error, as an ErrorRecord's message), once it ended.</summary>
    public PSObject? Finish()
    {
        if (_job is null)
        {
            return null;
        }

        var output = Invoke(cmdlet, """
            param($Job)
            $null = Wait-Job $Job -Timeout 120
            Receive-Job $Job -ErrorAction SilentlyContinue -ErrorVariable failed | Select-Object -Skip 1
            if ($failed) { Write-Warning "Receive-KvmVM on the destination host: $($failed[0])" }
            Remove-Job $Job -Force
            """, _job);
        _job = null;
        return output.FirstOrDefault();
    }

    /// <summary>Removes a VM this command started there (after a failure before the migration began).</summary>
    public void RemoveVm(string name) =>
        InvokeRemote("param($n) Stop-KvmVM $n -Force -Confirm:$false -ErrorAction SilentlyContinue", name);

    public void Close()
    {
        if (_job is not null)
        {
            Invoke(cmdlet, "param($Job) Stop-Job $Job; Remove-Job $Job -Force", _job);
            _job = null;
        }

        if (ownsSession)
        {
            Invoke(cmdlet, "param($Session) Remove-PSSession $Session", session);
        }
    }

    private void InvokeRemote(string script, params object?[] arguments) =>
        Invoke(cmdlet, """
            param($Session, $Script, $Arguments)
            Invoke-Command -Session $Session -ScriptBlock ([scriptblock]::Create($Script)) -ArgumentList $Arguments -ErrorAction Stop
            """, session, script, arguments);

    private static IReadOnlyList<PSObject> Invoke(PSCmdlet cmdlet, string script, params object?[] arguments)
    {
        try
        {
            return cmdlet.InvokeCommand.InvokeScript(script, true, System.Management.Automation.Runspaces.PipelineResultTypes.None, null, arguments);
        }
        catch (RuntimeException e)
        {
            throw new EngineException("DestinationHostFailed", ErrorKind.ConnectionError,
                $"On the destination host: {e.Message}", e);
        }
    }
}
