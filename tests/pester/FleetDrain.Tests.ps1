# examples/Invoke-KvmFleetDrain.ps1 against three namespace hosts (TestHosts.ps1), each with its own
# sshd: h1 drains into h2 while h2 drains its own VMs into h3, both at once, over remoting.
BeforeAll {
    . "$PSScriptRoot/TestHelpers.ps1"
    Import-Module $ModuleUnderTest -Force
    . "$PSScriptRoot/TestHosts.ps1"
    $script:RunDir = Initialize-TestRunDirectory
    $script:FleetDrain = Join-Path $Root 'examples/Invoke-KvmFleetDrain.ps1'
    $script:Hosts = foreach ($n in 'fd1', 'fd2', 'fd3') { New-TestHost -Name $n }
    $script:H1, $script:H2, $script:H3 = $Hosts
    # Fleet hosts reach each other: h1 → h2 and h2 → h3, each over its own link.
    Connect-TestHost -From $H1 -To $H2
    Connect-TestHost -From $H2 -To $H3
    $script:Sessions = @{}
    foreach ($h in $Hosts) {
        $Sessions[$h.Name] = New-TestHostSession -TestHost $h
        Invoke-Command -Session $Sessions[$h.Name] { Import-Module $using:ModuleUnderTest }
    }

    function Get-SshOption($TestHost) {
        @{ UserKnownHostsFile = $TestHost.KnownHostsFile; GlobalKnownHostsFile = '/dev/null'; StrictHostKeyChecking = 'yes'; BatchMode = 'yes'; IdentitiesOnly = 'yes' }
    }

    function Start-RemoteSource($TestHost, [string] $Name) {
        # A light test guest on that host (its QEMU runs in the host's namespace, in its run directory).
        Invoke-Command -Session $Sessions[$TestHost.Name] -ArgumentList $Name, $Guest, $Machine {
            param($Name, $Guest, $Machine)
            $vm = Start-KvmVM -Name $Name -Memory 128MB -Kernel $Guest -Append 'ws=8 hot=2 rate=500 bytes=16 pattern=scatter fill=random' -Accelerator Tcg -Machine $Machine
            $deadline = [DateTime]::UtcNow.AddSeconds(60)
            while (-not (Select-String -Path $vm.SerialLog -Pattern '^DMGUEST ready' -Quiet)) {
                if ([DateTime]::UtcNow -gt $deadline) { throw "guest '$Name' did not get ready" }
                Start-Sleep -Milliseconds 100
            }
        }
    }

    function Get-RemoteVM($TestHost, [string] $Pattern) {
        @(Invoke-Command -Session $Sessions[$TestHost.Name] { Get-KvmVM $using:Pattern -ErrorAction SilentlyContinue } | Sort-Object Name)
    }
}

AfterAll {
    foreach ($h in $Hosts) { if ($h) { Remove-TestHost $h } }
    Remove-TestRunDirectory $RunDir
}

Describe 'examples/Invoke-KvmFleetDrain.ps1' {
    It 'drains two hosts at once, each to its own destination, and logs every VM to CSV' {
        Start-RemoteSource $H1 a1
        Start-RemoteSource $H1 a2
        Start-RemoteSource $H2 b1
        $log = Join-Path $RunDir 'fleet.csv'
        $plan = @(
            @{ SourceHost = $H1.Address; DestinationHost = $H2.Address; Name = 'a*'
                SourceSsh = @{ UserName = 'root'; KeyFilePath = $H1.KeyFilePath; Options = (Get-SshOption $H1) }
                DestinationSsh = @{ UserName = 'root'; KeyFilePath = $H2.KeyFilePath; SshOption = (Get-SshOption $H2) } 
            }
            @{ SourceHost = $H2.Address; DestinationHost = $H3.Address; Name = 'b*'
                SourceSsh = @{ UserName = 'root'; KeyFilePath = $H2.KeyFilePath; Options = (Get-SshOption $H2) }
                DestinationSsh = @{ UserName = 'root'; KeyFilePath = $H3.KeyFilePath; SshOption = (Get-SshOption $H3) } 
            }
        )

        $rows = @(& $FleetDrain -Plan $plan -LogPath $log -ThrottleLimit 2 -Bandwidth 20MB -Module $ModuleUnderTest)

        $csv = @(Import-Csv $log | Sort-Object VMName)
        $csv.Count | Should -Be 3
        $csv.VMName | Should -Be 'a1', 'a2', 'b1'
        $csv.Status | Should -Be 'Completed', 'Completed', 'Completed'
        $csv.SourceHost | Should -Be $H1.Address, $H1.Address, $H2.Address
        $csv.DestinationHost | Should -Be $H2.Address, $H2.Address, $H3.Address
        ($csv.MigrationId | Where-Object { $_ -as [guid] } | Sort-Object -Unique).Count | Should -Be 3
        foreach ($row in $csv) {
            [DateTimeOffset]::Parse($row.EndTime) | Should -BeGreaterThan ([DateTimeOffset]::Parse($row.StartTime))
            [double]$row.Downtime | Should -BeGreaterThan 0
            $row.Error | Should -BeNullOrEmpty
        }
        $rows.Count | Should -Be 3 -Because 'the script outputs the rows it logged'

        # Where they are now: each source host is empty of them, each destination runs them.
        Get-RemoteVM $H1 'a*' | Should -BeNullOrEmpty
        (Get-RemoteVM $H2 'a*').State | Should -Be 'running', 'running'
        Get-RemoteVM $H2 'b*' | Should -BeNullOrEmpty
        (Get-RemoteVM $H3 'b*').State | Should -Be 'running'
    }
}
