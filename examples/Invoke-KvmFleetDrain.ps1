<#
.SYNOPSIS
    Evacuates several hosts at once, each to its own destination host, over PowerShell remoting,
    and logs every VM's result to a CSV file.

.DESCRIPTION
    For each entry of -Plan this opens a PSSession (SSH) to the source host and runs there, as a
    job, Get-KvmVM <pattern> | Move-KvmVM -DestinationHost <destination> -ThrottleLimit <n>
    -PassThru. All source hosts drain at the same time; on each, up to -ThrottleLimit VMs move at
    once, sharing that host's -Bandwidth and page-cache memory. Move-KvmVM on the source host
    starts a matching VM and Receive-KvmVM on the destination host itself (its one-time tokens
    stay inside those sessions).

    Every VM gets a CSV row as its migration ends: MigrationId, VMName, SourceHost,
    DestinationHost, StartTime and EndTime (UTC, ISO 8601), Downtime (milliseconds), Status,
    Error. A VM that fails keeps running on its source host (Move-KvmVM's guarantee), is logged
    with Status Failed and its error, and the other VMs go on. The script outputs the rows, and
    exits with 1 when any VM failed.

    Each host needs pwsh with sshd's 'Subsystem powershell' and the same DeltaMigrate version;
    the source hosts must reach their destination hosts over SSH (as the user and key given).

.PARAMETER Plan
    One entry (hashtable or object) per source host:
      SourceHost       the host to empty (as New-PSSession -HostName takes it)
      DestinationHost  where its VMs go (as the source host reaches it)
      Name             optional: the VMs to move there (wildcards), instead of -Name
      SourceSsh        optional: New-PSSession parameters for this source host (UserName,
                       KeyFilePath, Port, Options), over -UserName/-KeyFilePath/-SshOption
      DestinationSsh   optional: Move-KvmVM parameters for the hop to the destination (UserName,
                       KeyFilePath, SshPort, SshOption), over -UserName/-KeyFilePath/-SshOption

.PARAMETER Module
    What the source hosts import: the module name (installed there) or a manifest path.

.EXAMPLE
    # Nightly maintenance of two racks: kvm01 empties into kvm11 and kvm02 into kvm12, three VMs
    # at a time per host, 50 MB/s per source host, one CSV for the whole night.
    ./Invoke-KvmFleetDrain.ps1 -LogPath /var/log/deltamigrate/fleet.csv -UserName root -KeyFilePath ~/.ssh/id_ed25519 `
        -ThrottleLimit 3 -Bandwidth 50MB -Plan @(
            @{ SourceHost = 'kvm01'; DestinationHost = 'kvm11' }
            @{ SourceHost = 'kvm02'; DestinationHost = 'kvm12'; Name = 'web*' }
        )

.NOTES
    Logged as each migration ends, so a drain cut short keeps the rows of what moved. Start pwsh
    on the hosts with DOTNET_ThreadPool_UnfairSemaphoreSpinLimit=0 on slow links (docs/performance.md).
#>
[CmdletBinding(SupportsShouldProcess)]
param(
    [Parameter(Mandatory)] [object[]] $Plan,

    # CSV file that receives one row per VM (appended, so a night's log keeps every run).
    [Parameter(Mandatory)] [string] $LogPath,

    # The VMs to move from each source host (wildcards), unless its Plan entry says otherwise.
    [string] $Name = '*',

    # SSH defaults for both hops (to the source hosts, and from them to their destinations).
    [string] $UserName,
    [string] $KeyFilePath,
    [hashtable] $SshOption,

    # Migrations at once on each source host.
    [ValidateRange(1, 64)] [int] $ThrottleLimit = 2,

    [ValidateSet('Delta', 'Lz4', 'Native', 'None')] [string] $Compress = 'Delta',

    # Bytes per second per source host, shared by its concurrent migrations; 0: no limit.
    [long] $Bandwidth = 0,

    # Per VM: cancel a migration that has not converged by then (the VM keeps running).
    [TimeSpan] $Timeout = [TimeSpan]::FromMinutes(10),

    [string] $Module = 'DeltaMigrate'
)

$ErrorActionPreference = 'Stop'

function Get-Value($Entry, [string] $Key) {
    if ($Entry -is [System.Collections.IDictionary]) { $Entry[$Key] } else { $Entry.$Key }
}

function Write-Row($Drain, $Result, $ErrorRecord) {
    # A result, or a failure whose TargetObject is the failed migration's result (or the VM's name).
    $r = if ($Result) { $Result } elseif ($ErrorRecord.TargetObject.PSObject.Properties['VMName']) { $ErrorRecord.TargetObject }
    $row = [pscustomobject]@{
        MigrationId     = if ($r) { "$($r.MigrationId)" }
        VMName          = if ($r) { $r.VMName } elseif ($ErrorRecord) { "$($ErrorRecord.TargetObject)" }
        SourceHost      = $Drain.SourceHost
        DestinationHost = $Drain.DestinationHost
        # .UtcDateTime: a live DateTimeOffset and one read back from a remote job (a property bag) both have it.
        StartTime       = if ($r) { ([datetime]$r.StartTime.UtcDateTime).ToString('o') }
        EndTime         = if ($r) { ([datetime]$r.EndTime.UtcDateTime).ToString('o') }
        Downtime        = if ($r) { [math]::Round(([TimeSpan]$r.Downtime).TotalMilliseconds) }
        # .ToString(): an enum read back from a remote job is its number, with the name kept as its ToString.
        Status          = if ($r) { $r.Status.ToString() } else { 'Failed' }
        Error           = if ($ErrorRecord) { "$ErrorRecord" } else { '' }
    }
    $row | Export-Csv -Path $LogPath -Append -NoTypeInformation
    $row
}

$drains = [Collections.Generic.List[object]]::new()
$failed = 0
try {
    foreach ($entry in $Plan) {
        $source = Get-Value $entry SourceHost
        $destination = Get-Value $entry DestinationHost
        $pattern = (Get-Value $entry Name) ?? $Name
        if (-not $source -or -not $destination) { throw "Each -Plan entry needs SourceHost and DestinationHost: $($entry | Out-String)" }
        if (-not $PSCmdlet.ShouldProcess($source, "Drain VMs '$pattern' to $destination")) { continue }

        $connect = @{ HostName = $source; SSHTransport = $true }
        if ($UserName) { $connect.UserName = $UserName }
        if ($KeyFilePath) { $connect.KeyFilePath = $KeyFilePath }
        if ($SshOption) { $connect.Options = $SshOption }
        if ($own = Get-Value $entry SourceSsh) { foreach ($k in $own.Keys) { $connect[$k] = $own[$k] } }

        $move = @{ DestinationHost = $destination; ThrottleLimit = $ThrottleLimit; Compress = $Compress; Timeout = $Timeout; PassThru = $true }
        if ($Bandwidth -gt 0) { $move.Bandwidth = $Bandwidth }
        if ($UserName) { $move.UserName = $UserName }
        if ($KeyFilePath) { $move.KeyFilePath = $KeyFilePath }
        if ($SshOption) { $move.SshOption = $SshOption }
        if ($own = Get-Value $entry DestinationSsh) { foreach ($k in $own.Keys) { $move[$k] = $own[$k] } }

        $session = New-PSSession @connect
        $job = Invoke-Command -Session $session -AsJob -ArgumentList $Module, $pattern, $move -ScriptBlock {
            param($Module, $Pattern, $Move)
            Import-Module $Module -ErrorAction Stop
            Get-KvmVM $Pattern | Where-Object State -EQ 'running' | Move-KvmVM @Move -Confirm:$false
        }
        $drains.Add([pscustomobject]@{ SourceHost = $source; DestinationHost = $destination; Session = $session; Job = $job })
        Write-Verbose "Draining '$pattern' on $source to $destination"
    }

    # All hosts drain at once; each VM is logged as its migration ends.
    do {
        $running = @($drains | Where-Object { $_.Job.State -in 'NotStarted', 'Running' })
        if ($running) { $null = Wait-Job -Job $running.Job -Any -Timeout 5 }
        foreach ($d in $drains) {
            $errors = $null
            $results = @(Receive-Job $d.Job -ErrorAction SilentlyContinue -ErrorVariable errors)
            foreach ($r in $results) { Write-Row $d $r $null; if ($r.Status.ToString() -ne 'Completed') { $failed++ } }
            foreach ($e in @($errors)) { Write-Row $d $null $e; $failed++ }
        }
    } while ($running)
}
finally {
    foreach ($d in $drains) { Remove-Job $d.Job -Force -ErrorAction Ignore; Remove-PSSession $d.Session -ErrorAction Ignore }
}

if ($failed) {
    Write-Warning "$failed VM(s) did not move (they keep running on their source hosts); see $LogPath."
    exit 1
}
