# The module's surface: manifest, help, WhatIf, error ids. No migration needed.
BeforeAll {
    Import-Module "$PSScriptRoot/../../DeltaMigrate.psd1" -Force
    . "$PSScriptRoot/TestHelpers.ps1"
    $script:RunDir = Initialize-TestRunDirectory
}

AfterAll {
    Remove-TestRunDirectory $RunDir
}

BeforeDiscovery {
    $script:Cmdlets = 'Start-KvmVM', 'Get-KvmVM', 'Stop-KvmVM', 'Resume-KvmVM', 'Invoke-KvmQmp', 'Move-KvmVM', 'Receive-KvmVM', 'Measure-KvmVM', 'Export-KvmMigrationReport'
}

Describe 'DeltaMigrate module' {
    It 'exports exactly its cmdlets' {
        (Get-Command -Module DeltaMigrate).Name | Sort-Object | Should -Be ($Cmdlets | Sort-Object)
    }

    It '<_> has help with a description, parameters and examples' -ForEach $Cmdlets {
        $help = Get-Help $_ -Full
        $help.Description.Text | Should -Not -BeNullOrEmpty
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 2
        foreach ($parameter in (Get-Command $_).Parameters.Values | Where-Object { $_.Name -notin [Management.Automation.PSCmdlet]::CommonParameters -and $_.Name -notin [Management.Automation.PSCmdlet]::OptionalCommonParameters }) {
            ($help.Parameters.Parameter | Where-Object Name -EQ $parameter.Name).Description.Text |
                Should -Not -BeNullOrEmpty -Because "-$($parameter.Name) of $_ needs a description"
        }
    }

    It 'completes VM names for -Name and -Destination from the run directory' {
        $null = Start-TestDestination -Name 'tab-one'
        $null = Start-TestDestination -Name 'tab-two'
        $names = { param($line) (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText }
        & $names 'Get-KvmVM tab-' | Should -Be @('tab-one', 'tab-two')
        & $names 'Move-KvmVM tab-one -Destination tab-t' | Should -Be @('tab-two')
        & $names 'Stop-KvmVM -Name TAB-O' | Should -Be @('tab-one') -Because 'names complete case-insensitively'
        & $names 'Measure-KvmVM nothing-like-this' | Should -BeNullOrEmpty
        Get-KvmVM 'tab-*' | Stop-KvmVM -Force -Confirm:$false
    }

    It 'has an about topic' {
        Get-Help about_DeltaMigrate | Out-String | Should -Match 'Move-KvmVM'
    }
}

Describe 'Errors that say what to do' {
    It 'Move-KvmVM names an unknown VM' {
        { Move-KvmVM -Name no-such-vm -Destination 127.0.0.1:4444 -ErrorAction Stop } |
            Should -Throw -ErrorId 'VMNotFound,DeltaMigrate.Module.Commands.MoveKvmVMCommand'
    }

    It 'a pattern that matches several VMs where one is expected is an error naming them' {
        $null = Start-TestDestination -Name amb-one
        $null = Start-TestDestination -Name amb-two
        $err = { Invoke-KvmQmp 'amb-*' query-status -ErrorAction Stop } | Should -Throw -ErrorId 'AmbiguousVMName,DeltaMigrate.Module.Commands.InvokeKvmQmpCommand' -PassThru
        $err.Exception.Message | Should -Match 'amb-one, amb-two'
        Stop-KvmVM 'amb-*' -Force
    }

    It 'Get-KvmVM names an unknown VM but not an empty wildcard' {
        { Get-KvmVM -Name no-such-vm -ErrorAction Stop } | Should -Throw -ErrorId 'VMNotFound,DeltaMigrate.Module.Commands.GetKvmVMCommand'
        Get-KvmVM -Name 'no-such-*' | Should -BeNullOrEmpty
    }

    It 'Start-KvmVM refuses a kernel that does not exist' {
        { Start-KvmVM -Name k -Memory 64MB -Kernel /nonexistent/kernel -ErrorAction Stop } |
            Should -Throw -ErrorId 'KernelNotFound,DeltaMigrate.Module.Commands.StartKvmVMCommand'
    }

    It '<_> refuses a run directory other users can write to' -ForEach 'Get-KvmVM', 'Start-KvmVM' {
        $open = Join-Path ([IO.Path]::GetTempPath()) "dm-pester-open-$([guid]::NewGuid().ToString('n').Substring(0, 8))"
        $null = [IO.Directory]::CreateDirectory($open)
        [IO.File]::SetUnixFileMode($open, [IO.UnixFileMode]0x1FF)   # 0777
        $env:DELTAMIGRATE_RUNDIR = $open
        try {
            $command = if ($_ -eq 'Get-KvmVM') { { Get-KvmVM -ErrorAction Stop } } else { { Start-KvmVM -Name open-vm -Memory 64MB -Kernel $Guest -ErrorAction Stop } }
            $command | Should -Throw -ErrorId "RunDirectoryInsecure,DeltaMigrate.Module.Commands.$($_ -replace '-', '')Command"
            $command | Should -Throw -ExpectedMessage "*mode is 0777*set `$DELTAMIGRATE_RUNDIR to a folder you own with mode 0700*"
            Get-ChildItem $open | Should -BeNullOrEmpty -Because 'nothing is written into a folder that is refused'
        }
        finally {
            $env:DELTAMIGRATE_RUNDIR = $RunDir
            Remove-Item -Recurse -Force $open
        }
    }

    It 'Start-KvmVM keeps its serial log, pid file, record and sockets private (0600)' {
        $vm = Start-TestDestination -Name 'private-vm'
        try {
            foreach ($file in $vm.SerialLog, (Join-Path $RunDir 'private-vm.pid'), (Join-Path $RunDir 'private-vm.json'), (Join-Path $RunDir 'private-vm.qmp'), (Join-Path $RunDir 'private-vm.query.qmp')) {
                [IO.File]::GetUnixFileMode($file) | Should -Be ([IO.UnixFileMode]'UserRead, UserWrite') -Because "$file is for its owner only"
            }
            [IO.File]::GetUnixFileMode($RunDir) | Should -Be ([IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
        }
        finally { Get-KvmVM 'private-vm' | Stop-KvmVM -Force -Confirm:$false }
    }

    It 'Start-KvmVM -WhatIf starts nothing' {
        Start-KvmVM -Name whatif-vm -Memory 64MB -Kernel $Guest -WhatIf
        Get-KvmVM -Name 'whatif-*' | Should -BeNullOrEmpty
        Test-Path (Join-Path $RunDir 'whatif-vm.json') | Should -BeFalse
    }
}
