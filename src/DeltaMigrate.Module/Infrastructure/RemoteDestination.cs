using System.Management.Automation;
using DeltaMigrate.Engine;
using DeltaMigrate.Engine.Vm;

namespace DeltaMigrate.Module.Infrastructure;

/// <summary>
/// The destination host's half of Move-KvmVM -DestinationHost, over PowerShell remoting (SSH): the
/// same module version there, and per VM a waiting VM that matches the source and Receive-KvmVM as a
/// thread job in that session (<see cref="RemoteReceiver"/>). Each call is short and runs on the
/// pipeline thread. The token comes back inside the session and goes straight to the engine: it is
/// never printed and never on a command line.
/// </summary>
internal sealed class RemoteDestination(PSCmdlet cmdlet, PSObject session, bool ownsSession, string host)
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);

    /// <summary>The address the source's side connects to (the session's host).</summary>
    public string Host { get; } = host;

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
    public void StartWaitingVm(VmRecord source, string name, bool staysPaused)
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
            ["Paused"] = staysPaused,
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

    /// <summary>
    /// Starts Receive-KvmVM there as a thread job inside the session, so one session serves several
    /// receives at once, and returns once its ready object (endpoint and token) is in.
    /// </summary>
    public RemoteReceiver StartReceiver(string name, string? qmpSocket, int concurrent, string? libvirtSocket = null)
    {
        var started = InvokeRemote("""
            param($Name, $QmpSocket, $Throttle, $Seconds, $LibvirtSocket)
            $m = Get-Module DeltaMigrate | Select-Object -First 1
            $manifest = Join-Path $m.ModuleBase 'DeltaMigrate.psd1'
            if (-not (Test-Path $manifest)) { $manifest = $m.Path }
            # A thread job's runspace starts empty: it imports the module the session imported.
            $job = Start-ThreadJob -ThrottleLimit $Throttle -ArgumentList $manifest, $Name, $QmpSocket, $LibvirtSocket -ScriptBlock {
                param($Manifest, $N, $Socket, $Libvirt)
                Import-Module $Manifest
                # libvirt's destination QEMU is fed at its migration socket; a foreign QEMU waiting there is named by its QMP socket.
                if ($Libvirt) { Receive-KvmVM -LibvirtSocket $Libvirt -Listen 0.0.0.0:0 -Confirm:$false }
                elseif ($Socket) { Receive-KvmVM -QmpSocket $Socket -Listen 0.0.0.0:0 -Confirm:$false }
                else { Receive-KvmVM $N -Listen 0.0.0.0:0 -Confirm:$false }
            }
            $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
            while ($job.Output.Count -lt 1) {
                if ($job.State -notin 'NotStarted', 'Running') { Receive-Job $job -ErrorAction Stop; throw "Receive-KvmVM $Name ended on the destination host before it was ready ($($job.State))." }
                if ([DateTime]::UtcNow -gt $deadline) { Remove-Job $job -Force; throw "Receive-KvmVM $Name on the destination host was not ready within $Seconds s." }
                Start-Sleep -Milliseconds 50
            }
            [pscustomobject]@{ Job = $job.InstanceId; Ready = $job.Output[0] }
            """, name, qmpSocket, Math.Max(concurrent, 5), ReadyTimeout.TotalSeconds, libvirtSocket).Single();
        var ready = PSObject.AsPSObject(started.Properties["Ready"].Value);
        var endpoint = ready.Properties["Endpoint"].Value.ToString()!;
        var port = int.Parse(endpoint[(endpoint.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        return new RemoteReceiver(this, LanguagePrimitives.ConvertTo<Guid>(started.Properties["Job"].Value), port, ready.Properties["Token"].Value.ToString()!);
    }

    /// <summary>The receive job's result (or its error, as a warning), once it ended; the job is removed.</summary>
    internal PSObject? FinishReceiver(Guid job)
    {
        var output = Invoke(cmdlet, """
            param($Session, $Id)
            $r = Invoke-Command -Session $Session -ArgumentList $Id -ScriptBlock {
                param($Id)
                $job = Get-Job -InstanceId $Id -ErrorAction SilentlyContinue
                if (-not $job) { return }
                $null = Wait-Job $job -Timeout 120
                $failed = $null
                $out = Receive-Job $job -ErrorAction SilentlyContinue -ErrorVariable failed | Select-Object -Skip 1
                Remove-Job $job -Force
                [pscustomobject]@{ Result = $out | Select-Object -First 1; Failure = [string]$(if ($failed) { $failed[0] }) }
            }
            if ($r.Failure) { Write-Warning "Receive-KvmVM on the destination host: $($r.Failure)" }
            $r.Result
            """, session, job);
        return output.FirstOrDefault();
    }

    /// <summary>Stops a receive job that is still running (this side gave up) and removes it.</summary>
    internal void StopReceiver(Guid job) =>
        InvokeRemote("param($Id) Get-Job -InstanceId $Id -ErrorAction SilentlyContinue | Remove-Job -Force", job);

    /// <summary>Removes a VM this command started there (after a failure before the migration began).</summary>
    public void RemoveVm(string name) =>
        InvokeRemote("param($n) Stop-KvmVM $n -Force -Confirm:$false -ErrorAction SilentlyContinue", name);

    /// <summary>Removes the session if this command opened it (its thread jobs end with its process).</summary>
    public void Close()
    {
        if (!ownsSession)
        {
            return;
        }

        try
        {
            Invoke(cmdlet, "param($Session) Remove-PSSession $Session", session);
        }
        catch (Exception e) when (e is EngineException or PipelineStoppedException)
        {
            // The pipeline is stopping and runs no script: close the connection itself.
            (session.BaseObject as System.Management.Automation.Runspaces.PSSession)?.Runspace.Close();
        }
    }

    private IReadOnlyList<PSObject> InvokeRemote(string script, params object?[] arguments) =>
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
